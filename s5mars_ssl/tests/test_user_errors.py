"""SAM mask inputs that are wrong are UserErrors naming the file (one line, exit 2), raised
where they are found; the CLI no longer converts every FileNotFoundError (issue 25)."""

from __future__ import annotations

import pytest

from s5mars_ssl.sam_masks import list_images, main
from shared.errors import UserError


def test_missing_or_empty_inputs_name_the_file(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        list_images(tmp_path / "nope")
    with pytest.raises(UserError, match="no .jpg/.png image"):
        list_images(tmp_path)
    (tmp_path / "a.jpg").write_bytes(b"")
    for text, match in (("{broken", "not a JSON list"), ("3", "not a JSON list"),
                        ('["a", "b"]', "b.jpg: image file not found")):
        (tmp_path / "list.json").write_text(text)
        with pytest.raises(UserError, match=match):
            list_images(tmp_path, tmp_path / "list.json")
    with pytest.raises(UserError, match="sample list not found"):
        list_images(tmp_path, tmp_path / "none.json")


def test_cli_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["--images", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "nope: image folder not found" in err
