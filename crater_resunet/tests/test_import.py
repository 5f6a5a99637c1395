import importlib


def test_package_imports():
    mod = importlib.import_module("crater_resunet")
    assert mod.__doc__
