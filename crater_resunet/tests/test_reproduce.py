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


def test_two_seed_tiny_reproduce_keeps_per_seed_values(tmp_path):
    import json

    from crater_resunet.data.synthetic import write_dataset

    data = tmp_path / "syn"
    write_dataset(data, n_train=4, n_valid=2, size=64, seed=0)
    sets = [f"data.root={data}", "data.image_size=[64, 64]", "data.cache=false",
            "model.base_filters=2", "train.batch_size=2", "train.epochs=1",
            "train.run_eagerly=true"]
    argv = ["--seeds", "2", "--runs", str(tmp_path / "runs"), "--results",
            str(tmp_path / "res"), "--no-lunar"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["seeds"] == [42, 43]
    row = next(r for r in summary["rows"] if r["metric"] == "Dice, thresholded 0.5")
    assert row["ours"]["n"] == 2 and len(row["ours"]["values"]) == 2
    assert (tmp_path / "runs" / "quick_seed43" / "summary.json").is_file()
    # a rerun reuses both finished runs (same config and code version)
    assert main(argv) == 0
    log = (tmp_path / "res" / "reproduce.log").read_text()
    assert log.count("reusing the finished run") == 2
