"""Issue 27: the run/output contract enforced in one place, by fault class (shared/ only).

Each table holds the issue's examples that live in ``shared/`` plus at least one other member
of the class; the subprojects' CLIs are tested in their own ``tests/test_contract_27.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.atomic import (
    CheckpointSetError,
    atomic_files,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    checked_files,
)
from shared.configs import REPO_ROOT as REPO
from shared.configs import ConfigError, load_config, read_yaml_mapping
from shared.images import ImageReadError, read_image
from shared.runs import (
    RunDir,
    UserError,
    check_paths,
    cli_main,
    declare_paths,
    fraction,
    positive_float,
    positive_int,
)


# --------------------------------------------------------------------------- data lost
def _dataset(root: Path, n: int = 5) -> Path:
    (root / "imgs").mkdir(parents=True)
    for k in range(n):
        (root / "imgs" / f"{k}.png").write_bytes(b"x")
    (root / "lists.txt").write_text("a\n")
    return root


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))  # no stray .lock either


@pytest.mark.parametrize("case", [
    "overwrite_data_folder",        # issue: --run-dir = --data with --overwrite emptied the data
    "overwrite_data_declared",      # the same with the data folder declared as the run's input
    "run_dir_inside_data",          # a run folder inside the data (a later survey reads it)
    "run_dir_contains_data",        # --overwrite on the data's parent would delete the data
])
def test_overwrite_never_deletes_what_the_run_reads(tmp_path, case):
    data = _dataset(tmp_path / "data")
    before = _files(data)
    run_dir, inputs = {
        "overwrite_data_folder": (data, []),
        "overwrite_data_declared": (data, [data]),
        "run_dir_inside_data": (data / "run", [data]),
        "run_dir_contains_data": (tmp_path, [data]),
    }[case]
    with pytest.raises(UserError) as exc:
        RunDir.open(run_dir, {"seed": 0}, overwrite=True, inputs=inputs)
    assert "\n" not in str(exc.value)
    assert _files(data) == before


def test_overwrite_still_replaces_a_run_folder(tmp_path):
    run, _ = RunDir.open(tmp_path / "run", {"seed": 0})
    run.append_history({"epoch": 1})
    run.close()
    run, _ = RunDir.open(tmp_path / "run", {"seed": 1}, overwrite=True)
    run.close()
    assert not run.read_history()


@pytest.mark.parametrize("out,inputs,what", [
    ("ckpt.pt", ["ckpt.pt"], "would overwrite"),           # evaluate --out onto its checkpoint
    ("w.safetensors", ["w.safetensors"], "would overwrite"),  # measure_memory --out onto --weights
    ("pred.csv", ["pred.csv", "truth.csv"], "would overwrite"),  # evaluate_catalog --json
    ("imgs", ["imgs"], "would overwrite"),                 # predict --out = its input folder
    ("imgs/out", ["imgs"], "lies inside"),                 # survey written into its own input
    (".", ["imgs/a.png"], "contains"),                     # a file output holding an input
])
def test_outputs_are_checked_against_every_input(tmp_path, out, inputs, what):
    (tmp_path / "imgs").mkdir()
    for name in ("ckpt.pt", "w.safetensors", "pred.csv", "truth.csv", "imgs/a.png"):
        (tmp_path / name).write_bytes(b"keep")
    with pytest.raises(UserError, match=what):
        check_paths([tmp_path / out], [tmp_path / p for p in inputs])
    assert (tmp_path / "ckpt.pt").read_bytes() == b"keep"


def test_output_folder_of_new_files_may_hold_its_inputs(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    check_paths([tmp_path], [tmp_path / "a.png"], containing=False)  # predict a.png --out .
    with pytest.raises(UserError):
        check_paths([tmp_path / "a.png"], [tmp_path / "a.png"], containing=False)


def test_symlinked_output_onto_input_is_refused(tmp_path):
    (tmp_path / "in.pt").write_bytes(b"x")
    (tmp_path / "link.pt").symlink_to(tmp_path / "in.pt")
    with pytest.raises(UserError, match="would overwrite"):
        check_paths([tmp_path / "link.pt"], [tmp_path / "in.pt"])


def test_declared_parser_checks_paths_at_parse_time(tmp_path):
    p = argparse.ArgumentParser()
    p.add_argument("--weights")
    p.add_argument("--out")
    p.add_argument("inputs", nargs="*")
    declare_paths(p, inputs=["weights", "inputs"], outputs=["out"])
    w = tmp_path / "w.pt"
    w.write_bytes(b"weights")
    with pytest.raises(UserError, match="would overwrite"):
        p.parse_args(["--weights", str(w), "--out", str(w)])
    with pytest.raises(UserError, match="would overwrite"):
        p.parse_args([str(w), "--out", str(w)])
    assert p.parse_args(["--weights", str(w), "--out", str(tmp_path / "r.json")]).out
    assert w.read_bytes() == b"weights"


# --------------------------------------------------------------------------- silent wrong
def test_16bit_grey_png_read_as_rgb_is_not_white(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 7 + 1000).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    for mode in ("RGB", "L"):
        arr = read_image(path, mode=mode)
        assert arr.dtype == np.uint8
        assert (arr == 255).mean() < 0.05, mode  # was 99-100 % white
        assert arr.std() > 40  # the ramp survives the stretch
    assert read_image(path).dtype == np.uint16  # mode None keeps the raw values


def _tiff(path: Path, arr: np.ndarray) -> Path:
    import rasterio

    bands = arr[None] if arr.ndim == 2 else arr
    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1],
                       count=bands.shape[0], dtype=str(bands.dtype)) as dst:
        dst.write(bands)
    return path


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_float_tiff_in_unit_range_is_not_zeros(tmp_path):
    arr = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    out = read_image(_tiff(tmp_path / "f.tif", arr), mode="RGB")
    assert out.shape == (32, 32, 3) and out.max() > 200 and out.mean() > 60


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_nan_pixels_are_invalid_and_all_nan_is_an_error(tmp_path):
    arr = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    arr[:4] = np.nan
    out = read_image(_tiff(tmp_path / "some.tif", arr), mode="L")
    assert (out[:4] == 0).all() and out[4:].max() > 200
    with pytest.raises(ImageReadError, match="no valid pixel"):
        read_image(_tiff(tmp_path / "nan.tif", np.full((8, 8), np.nan, np.float32)), mode="RGB")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("bands", [64, 5])
def test_band_count_is_checked_against_an_rgb_model(tmp_path, bands):
    path = _tiff(tmp_path / "emb.tif", np.ones((bands, 8, 8), np.float32))
    with pytest.raises(ImageReadError, match=f"has {bands} bands"):
        read_image(path, mode="RGB")


@pytest.mark.parametrize("sets,match", [
    (["train.lr=.nan"], "finite"),              # --input_scale nan: a map of class 0
    (["train.iterations=-3"], "at least 1"),    # --iterations -3: a run of zero iterations
    (["train.batch_size=0"], "at least 1"),     # --batch_size 0: a traceback later
    (["train.lr=fast"], "expected a number"),   # a crater --set of a non-number
    (["train.amp=3"], "true or false"),
    (["train.lr=-1e-3"], "positive"),
])
def test_set_values_are_validated_up_front(tmp_path, sets, match):
    root = tmp_path / "root.yml"
    root.write_text("train:\n  lr: 0.001\n  iterations: 10\n  batch_size: 4\n  amp: false\n")
    with pytest.raises(ConfigError, match=match):
        load_config(root, {}, sets)
    child = tmp_path / "child.yml"
    key, value = sets[0].split("=")
    child.write_text(f"inherit: root.yml\ntrain:\n  {key.split('.')[1]}: {value}\n")
    with pytest.raises(ConfigError, match=match):  # the same check for a YAML file's values
        load_config(child, {})


@pytest.mark.parametrize("text", [".5", "0", "-3", "nan", "inf", "x"])
def test_numeric_option_types_refuse_meaningless_values(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(text)
    if text not in (".5",):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(text)
    assert positive_int("3") == 3 and fraction("0.5") == 0.5


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_outputs_keep_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        a = atomic_write_text(tmp_path / "a.txt", "x")
        b = atomic_write_json(tmp_path / "b.json", {"x": 1})
        with atomic_path(tmp_path / "c.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_files(tmp_path, "last", ["d.bin"]) as tmps:
            tmps["d.bin"].write_bytes(b"x")
    finally:
        os.umask(old)
    for p in (a, b, tmp_path / "c.bin", tmp_path / "d.bin"):
        assert stat.S_IMODE(p.stat().st_mode) == mode, p.name


# --------------------------------------------------------------------------- checkpoint sets
_KILL_CHILD = r"""
import os, signal, sys
from pathlib import Path
import shared.atomic as at

folder, point = Path(sys.argv[1]), sys.argv[2]
real_replace = os.replace
renamed = []

def replace(src, dst):
    real_replace(src, dst)
    if "-set." in str(src):
        renamed.append(dst)
        if point == f"rename{len(renamed)}":
            os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
with at.atomic_files(folder, "last", ["a.bin", "b.bin"]) as tmp:
    tmp["a.bin"].write_bytes(b"new-a")
    if point == "a":
        os.kill(os.getpid(), signal.SIGKILL)
    tmp["b.bin"].write_bytes(b"new-b")
    if point == "b":
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("point,expect", [
    ("a", "old"),        # killed while the first file is written
    ("b", "old"),        # killed while the second file is written (before the manifest)
    ("rename1", "new"),  # killed after the manifest, one file renamed: rolled forward
    ("rename2", "new"),  # killed after both renames
])
def test_kill_9_during_each_file_of_a_checkpoint_set(tmp_path, point, expect):
    with atomic_files(tmp_path, "last", ["a.bin", "b.bin"]) as tmp:
        tmp["a.bin"].write_bytes(b"old-a")
        tmp["b.bin"].write_bytes(b"old-b")
    proc = subprocess.run([sys.executable, "-c", _KILL_CHILD, str(tmp_path), point],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -9
    assert checked_files(tmp_path, "last", ["a.bin", "b.bin"])
    assert (tmp_path / "a.bin").read_bytes() == f"{expect}-a".encode()
    assert (tmp_path / "b.bin").read_bytes() == f"{expect}-b".encode()
    assert not list(tmp_path.glob(".last-set.*"))  # the killed write left nothing behind


def test_a_set_out_of_step_is_refused_in_one_line(tmp_path):
    with atomic_files(tmp_path, "last", ["a.bin", "b.bin"]) as tmp:
        tmp["a.bin"].write_bytes(b"a")
        tmp["b.bin"].write_bytes(b"b")
    (tmp_path / "b.bin").write_bytes(b"other")  # e.g. written by a build without manifests
    with pytest.raises(CheckpointSetError, match="out of step") as exc:
        checked_files(tmp_path, "last", ["a.bin", "b.bin"])
    assert "\n" not in str(exc.value)
    assert not checked_files(tmp_path / "none", "last", ["a.bin"])  # no manifest: legacy run
    (tmp_path / "last.manifest.json").write_text("{")
    with pytest.raises(CheckpointSetError, match="damaged"):
        checked_files(tmp_path, "last", ["a.bin", "b.bin"])


# --------------------------------------------------------------------------- tracebacks
@pytest.mark.parametrize("out", ["file.txt/out.json", "file.txt/sub/dir"])
def test_output_under_a_regular_file_is_one_line(tmp_path, out):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_paths([tmp_path / out])
    with pytest.raises(UserError, match="is a file"):
        RunDir.open(tmp_path / out, {})


def _cli(fn, capsys):
    rc = cli_main(fn, [])
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("raise_", [
    lambda: (_ for _ in ()).throw(UserError("a.yml: line one\n  line two\n  line three")),
    lambda: (_ for _ in ()).throw(CheckpointSetError("last.pt: out of step")),
])
def test_cli_user_errors_are_one_line_exit_2(capsys, raise_):
    def main(argv):
        next(raise_())

    rc, err = _cli(main, capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ")


def test_a_real_bug_keeps_its_traceback():
    def main(argv):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        cli_main(main, [])


# --------------------------------------------------------------------------- clear, not good enough
@pytest.mark.parametrize("text", ["a: [1, 2\nb: 3\n", "a: b: c\n", "\tx: 1\n"])
def test_malformed_yaml_is_one_line_with_its_place(tmp_path, text):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(UserError) as exc:
        read_yaml_mapping(path, UserError)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and "line" in msg


def test_failed_start_leaves_no_config_behind(tmp_path):
    """A data error raised by the trainer's own class (a UserError subclass) after the run
    folder was opened: the corrected relaunch is not refused as non-empty; a bug (any other
    exception, a ValueError too) keeps the folder for the post-mortem (issue 25)."""
    class DataError(UserError):
        pass

    with pytest.raises(DataError), RunDir.open(tmp_path / "run", {"seed": 0})[0] as run:
        run.logger("t").info("reading data")
        raise DataError("bad data")
    assert not (tmp_path / "run").exists()
    RunDir.open(tmp_path / "run", {"seed": 0})[0].close()
    with pytest.raises(ValueError), RunDir.open(tmp_path / "bug", {"seed": 0})[0]:
        raise ValueError("a bug")
    assert (tmp_path / "bug" / "config.yaml").is_file()


def test_manifest_names_hashes(tmp_path):
    with atomic_files(tmp_path, "best", ["w.bin"]) as tmp:
        tmp["w.bin"].write_bytes(b"w")
    manifest = json.loads((tmp_path / "best.manifest.json").read_text())
    assert set(manifest["files"]) == {"w.bin"} and len(manifest["files"]["w.bin"]["sha256"]) == 64


def test_resume_on_a_missing_folder_names_the_folder(tmp_path):
    from shared.runs import add_run_arguments, run_config

    p = add_run_arguments(argparse.ArgumentParser())
    args = p.parse_args(["--run-dir", str(tmp_path / "nope"), "--resume"])
    with pytest.raises(UserError, match="nope: nothing to resume.*no such folder"):
        run_config(args, {"quick": tmp_path / "quick.yml"})
