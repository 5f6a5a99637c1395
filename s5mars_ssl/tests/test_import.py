import importlib


def test_package_imports():
    mod = importlib.import_module("s5mars_ssl")
    assert mod.__doc__
