"""Issue 27 in dune_vlm: measure_memory's outputs never replace its inputs, meaningless sizes are
refused up front, a refused checkpoint in its child stays one line; the trainer's run folder
never replaces its data."""

from __future__ import annotations

import pickle

import pytest


def test_measure_memory_out_onto_weights_is_refused(tmp_path, capsys):
    from dune_vlm.measure_memory import main

    weights = tmp_path / "best.pt"
    weights.write_bytes(b"16.6 MB of weights")
    assert main(["--weights", str(weights), "--out", str(weights), "--workdir",
                 str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "would overwrite the input" in err and err.count("\n") == 1
    assert weights.read_bytes() == b"16.6 MB of weights"
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("flag,value", [("--sizes", "0"), ("--batch_size", "0"),
                                        ("--tile_size", "-8"), ("--threads", "0")])
def test_measure_memory_refuses_meaningless_numbers(tmp_path, capsys, flag, value):
    from dune_vlm.measure_memory import main

    with pytest.raises(SystemExit) as exc:
        main([flag, value, "--workdir", str(tmp_path / "w")])
    assert exc.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_measure_memory_refused_malicious_checkpoint_is_one_line(tmp_path, capsys):
    from dune_vlm.measure_memory import main

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"model": _Evil()}))
    rc = main(["--weights", str(bad), "--sizes", "64", "--tile_size", "32", "--stride", "32",
               "--workdir", str(tmp_path / "w"), "--no_progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "evil.pt" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("inside", [False, True])
def test_train_run_folder_never_replaces_its_data(tmp_path, capsys, inside):
    from dune_vlm.train import main

    data = tmp_path / "data"
    (data / "tiles").mkdir(parents=True)
    (data / "tiles" / "a.npy").write_bytes(b"tile")
    run_dir = data / "run" if inside else data
    assert main(["--data", str(data), "--run-dir", str(run_dir), "--overwrite"]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and "the input" in errors[0] and str(data) in errors[0]
    assert sorted(p.name for p in data.rglob("*")) == ["a.npy", "tiles"]


@pytest.mark.parametrize("module", ["dune_vlm.data.synthetic", "dune_vlm.make_text_embeds"])
def test_output_under_a_regular_file_is_one_line(tmp_path, capsys, module):
    import importlib

    (tmp_path / "file").write_text("x")
    main = importlib.import_module(module).main
    assert main(["--out", str(tmp_path / "file" / "out.npy")]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err or "Not a directory" in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("scale", [float("nan"), 0.0, -1.0, float("inf")])
def test_inference_tile_refuses_a_meaningless_input_scale(tmp_path, scale):
    from dune_vlm.inference_tile import TileInferenceError, predict_raster
    from dune_vlm.tests.test_inference_tile import LocalNet, raster

    path, _ = raster(tmp_path)
    with pytest.raises(TileInferenceError, match="input-scale"):  # was: a map of class 0
        predict_raster(path, tmp_path / "o.tif", LocalNet(), tile_size=64, stride=32,
                       input_scale=scale, progress=False)
    assert not (tmp_path / "o.tif").exists()
