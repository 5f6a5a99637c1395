import importlib


def test_package_imports():
    mod = importlib.import_module("mars_cracknet")
    assert mod.__doc__
