"""The reproduce helpers that need no training: figure shrinking and argument handling."""

import numpy as np
import pytest
from PIL import Image

from crater_resunet.reproduce import _shrink_png, main


def test_shrink_png_downscales_and_palettises(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(100, 200, 4), dtype=np.uint8)
    path = tmp_path / "fig.png"
    Image.fromarray(arr, "RGBA").save(path)
    before = path.stat().st_size
    _shrink_png(path, scale=0.5, colors=16)
    with Image.open(path) as im:
        assert im.size == (100, 50)
        assert im.mode == "P"
        assert len(im.getcolors()) <= 16
    assert path.stat().st_size < before


def test_bad_profile_is_a_clean_error(capsys):
    assert main(["--config", "no_such_profile_xyz"]) == 2
    err = capsys.readouterr().err
    assert "no_such_profile_xyz" in err


def test_help_exits_cleanly():
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
