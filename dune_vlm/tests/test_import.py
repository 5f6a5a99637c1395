import importlib


def test_package_imports():
    mod = importlib.import_module("dune_vlm")
    assert mod.__doc__
