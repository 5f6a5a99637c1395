"""shared.configs: YAML mapping reader with named errors, and the deep merge."""

import pytest

from shared.configs import deep_merge, read_yaml_mapping


class MyError(ValueError):
    pass


def test_reads_a_mapping_and_an_empty_file(tmp_path):
    (tmp_path / "a.yml").write_text("x: 1\nsub: {y: 2}\n")
    (tmp_path / "empty.yml").write_text("")
    assert read_yaml_mapping(tmp_path / "a.yml") == {"x": 1, "sub": {"y": 2}}
    assert read_yaml_mapping(tmp_path / "empty.yml") == {}


@pytest.mark.parametrize("text, message", [
    (None, "config file not found"),
    ("x: [1, 2\n", "not valid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_bad_files_raise_the_callers_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(MyError, match=message) as info:
        read_yaml_mapping(path, error=MyError)
    assert str(info.value).startswith(str(path))


def test_deep_merge_merges_nested_keys_and_copies():
    base = {"a": 1, "n": {"x": 1, "y": [1]}}
    over = {"n": {"y": [2], "z": 3}, "b": 2}
    out = deep_merge(base, over)
    assert out == {"a": 1, "b": 2, "n": {"x": 1, "y": [2], "z": 3}}
    out["n"]["y"].append(9)
    assert base == {"a": 1, "n": {"x": 1, "y": [1]}} and over["n"]["y"] == [2]
    assert deep_merge({"k": {"x": 1}}, {"k": 5}) == {"k": 5}
