"""Issue 27 in S5Mars: --resume refuses the shortcut flags that change the run (they used to
be dropped silently), no CLI writes into its inputs, meaningless numbers refused up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s5mars_ssl.augseg import trainer
from s5mars_ssl.tests.test_train import _tiny_cfg


@pytest.fixture(scope="module")
def semi_run(tiny_dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("s5m27") / "run"
    trainer.run(_tiny_cfg(tiny_dataset, 1), run_dir, progress=False)
    return run_dir


def _files(*roots: Path) -> dict[str, bytes]:
    out = {}
    for root in roots:
        for p in ([root] if root.is_file() else sorted(root.rglob("*"))):
            if p.is_file():
                out[str(p)] = p.read_bytes()
    return out


@pytest.mark.parametrize("flags,key", [
    (["--no-augin"], "semi.augin.enabled"),
    (["--no-sammix"], "semi.sammix.enabled"),
    (["--iterations", "8"], "trainer.iterations"),
    (["--augin-mode", "std"], "semi.augin.mode"),
])
def test_resume_refuses_shortcut_flags_that_change_the_run(semi_run, capsys, flags, key):
    from s5mars_ssl.train_semi import main

    before = _files(semi_run)
    assert main(["--run-dir", str(semi_run), "--resume", "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert "differ" in err and key in err and err.count("\n") == 1
    assert _files(semi_run) == before  # the finished run's files are not rewritten


@pytest.mark.parametrize("case", ["evaluate_out_onto_checkpoint", "predict_out_is_input",
                                  "predict_out_inside_input", "train_overwrite_data"])
def test_no_cli_writes_into_its_inputs(semi_run, tiny_dataset, tmp_path, capsys, case):
    from s5mars_ssl.evaluate import main as evaluate
    from s5mars_ssl.predict import main as predict
    from s5mars_ssl.train_supervised import main as train

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(imgs / "a.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(imgs / "a_mask.png")  # the user's mask
    ckpt = semi_run / "last.pt"
    before = _files(ckpt, imgs, tiny_dataset)
    rc = {
        "evaluate_out_onto_checkpoint": lambda: evaluate(["--model", str(ckpt), "--out",
                                                          str(ckpt)]),
        "predict_out_is_input": lambda: predict([str(imgs), "--model", str(ckpt), "--out",
                                                 str(imgs), "--no-progress"]),
        "predict_out_inside_input": lambda: predict([str(imgs), "--model", str(ckpt), "--out",
                                                     str(imgs / "pred"), "--no-progress"]),
        "train_overwrite_data": lambda: train(["--data", str(tiny_dataset), "--run-dir",
                                               str(tiny_dataset), "--overwrite",
                                               "--no-progress"]),
    }[case]()
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert _files(ckpt, imgs, tiny_dataset) == before


@pytest.mark.parametrize("flags,match", [
    (["--iterations", "-3"], "at least 1"),
    (["--iterations", "0"], "at least 1"),
    (["--set", "trainer.iterations=-3"], "at least 0"),
    (["--set", "trainer.lr=.nan"], "finite"),
])
def test_meaningless_numbers_refused_before_the_run_folder(tmp_path, capsys, flags, match):
    from s5mars_ssl.train_semi import main

    if flags[0] == "--iterations":  # an argparse type: usage line and exit 2
        with pytest.raises(SystemExit) as exc:
            main(["--run-dir", str(tmp_path / "r"), "--no-progress", *flags])
        assert exc.value.code == 2
    else:
        assert main(["--run-dir", str(tmp_path / "r"), "--no-progress", *flags]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_predict_refuses_an_all_nan_raster(semi_run, tmp_path, capsys):
    import rasterio

    from s5mars_ssl.predict import main as predict

    src = tmp_path / "nan.tif"
    with rasterio.open(src, "w", driver="GTiff", width=16, height=16, count=1,
                       dtype="float32") as dst:
        dst.write(np.full((1, 16, 16), np.nan, np.float32))
    rc = predict([str(src), "--model", str(semi_run / "last.pt"), "--out",
                  str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "nan.tif" in err and "no valid pixel" in err
