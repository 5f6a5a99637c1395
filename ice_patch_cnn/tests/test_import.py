import importlib


def test_package_imports():
    mod = importlib.import_module("ice_patch_cnn")
    assert mod.__doc__
