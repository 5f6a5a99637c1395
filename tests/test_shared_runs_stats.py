"""shared.stats (against hand-computed values), shared.configs.load_config and shared.runs."""

import argparse
import json
import os
import signal
import subprocess
import sys

import pytest

from shared.configs import ConfigError, load_config
from shared.results import build_results_table, write_summary
from shared.runs import (
    GracefulStop,
    RunDir,
    RunInterrupted,
    UserError,
    add_run_arguments,
    check_not_inputs,
    check_output_dir,
    cli_main,
    derive_seed,
    finished_run,
    run_config,
)
from shared.stats import claim, compare, describe, verdict


# --------------------------------------------------------------------------- stats
def test_describe_known_t_interval():
    d = describe([1, 2, 3, 4, 5])
    assert d["mean"] == 3.0
    assert d["std"] == pytest.approx(1.5811388300841898)
    # t_{0.975, 4} = 2.7764451051977987; half = t * s / sqrt(5)
    assert d["half_width"] == pytest.approx(2.7764451051977987 * 1.5811388300841898 / 5 ** 0.5)
    assert d["ci95"] == pytest.approx([3 - 1.9632431614775572, 3 + 1.9632431614775572])
    one = describe([0.7])
    assert one["std"] is None and one["ci95"] is None
    with pytest.raises(ValueError):
        describe([])
    with pytest.raises(ValueError, match="NaN"):
        describe([1.0, float("nan")])


def test_paired_differences_and_each_verdict():
    c = compare([0.6, 0.7, 0.8], [0.5, 0.5, 0.6])
    assert c["differences"] == pytest.approx([0.1, 0.2, 0.2])
    assert c["mean"] == pytest.approx(0.5 / 3)
    # t_{0.975, 2} = 4.302652729911275, s = 0.0577350269
    assert c["half_width"] == pytest.approx(4.302652729911275 * 0.05773502691896258 / 3 ** 0.5)
    assert c["verdict"] == "supports"
    assert compare([0.5, 0.5, 0.6], [0.6, 0.7, 0.8])["verdict"] == "contradicts"
    assert compare([0.6, 0.4, 0.5], [0.5, 0.5, 0.5])["verdict"] == "inconclusive"
    assert compare([0.5, 0.5, 0.6], [0.6, 0.7, 0.8], "less")["verdict"] == "supports"
    assert compare([1.0], [0.0])["verdict"] == "inconclusive"  # one seed: no interval
    assert verdict([-0.1, 0.2]) == "inconclusive"
    with pytest.raises(ValueError):
        compare([1, 2], [1])
    with pytest.raises(ValueError):
        verdict([0.1, 0.2], "sideways")


def test_results_render_mean_ci_verdict_and_figure(tmp_path):
    a, b = [0.61, 0.65, 0.63], [0.55, 0.58, 0.54]
    rows = [{"setting": "fusion", "metric": "mIoU", "reported": 80.36, "ours": describe(a)},
            {"setting": "baseline", "metric": "mIoU", "reported": None, "ours": describe(b)}]
    write_summary("dune_vlm", rows, data="synthetic", profile="quick", wall_time_s=3.0,
                  results_dir=tmp_path / "dune_vlm",
                  claims=[claim("text fusion helps", "mIoU", "fusion", a, "baseline", b)])
    text = build_results_table(tmp_path, figure_dir=tmp_path)
    assert "0.630 ± " in text and "(n=3)" in text
    assert "**supports** — text fusion helps: fusion > baseline on mIoU" in text
    assert (tmp_path / "dune_vlm" / "seeds.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "dune_vlm" / "summary.json").read_text())
    assert saved["rows"][0]["ours"]["values"] == a
    with pytest.raises(ValueError, match="claim 0"):
        write_summary("dune_vlm", rows, data="d", profile="p", wall_time_s=1,
                      results_dir=tmp_path, claims=[{"claim": "x"}])


def test_rerun_section_compares_verdicts_and_per_seed_values(tmp_path):
    def record(root, seeds, a, b):
        rows = [{"setting": "fusion", "metric": "mIoU", "reported": None, "ours": describe(a)}]
        write_summary("dune_vlm", rows, data="synthetic", profile="quick", wall_time_s=120,
                      results_dir=root / "dune_vlm", extra={"seeds": seeds},
                      claims=[claim("text fusion helps", "mIoU", "fusion", a, "baseline", b)])

    record(tmp_path / "rec", [0, 1, 2], [0.61, 0.65, 0.63], [0.55, 0.58, 0.54])
    record(tmp_path / "rerun", [0, 1], [0.61, 0.66], [0.55, 0.70])  # seed 1 differs by 0.01
    text = build_results_table(tmp_path / "rec", rerun_roots=[tmp_path / "rerun"])
    row = next(line for line in text.splitlines() if "| text fusion helps (mIoU) |" in line)
    assert "**supports**" in row and "(n=3)" in row and "(n=2)" in row and row.endswith("**no** |")
    assert "2 seed(s) in both runs, per-seed gap 0.01" in text
    assert "second run" not in build_results_table(tmp_path / "rec")  # no rerun folder: none


# --------------------------------------------------------------------------- configs
@pytest.fixture()
def profiles(tmp_path):
    (tmp_path / "paper.yml").write_text("train:\n  epochs: 10\n  lr: 0.1\nseed: 0\n")
    (tmp_path / "quick.yml").write_text("inherit: paper\ntrain:\n  epochs: 2\n")
    return {"paper": tmp_path / "paper.yml", "quick": tmp_path / "quick.yml"}


def test_load_config_inherits_and_sets(profiles, tmp_path):
    cfg = load_config("quick", profiles, ["train.lr=0.5", "seed=3"])
    assert cfg == {"train": {"epochs": 2, "lr": 0.5}, "seed": 3}
    user = tmp_path / "mine.yaml"
    user.write_text("_base_: quick.yml\nseed: 7\n")
    assert load_config(user, profiles)["seed"] == 7


def test_unknown_keys_are_errors_in_set_and_files(profiles, tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'train.iteration'"):
        load_config("quick", profiles, ["train.iteration=10"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("inherit: paper\ntrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key\(s\) train.epoch"):
        load_config(bad, profiles)
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config("quick", profiles, ["seed"])
    with pytest.raises(ConfigError, match="neither a profile"):
        load_config("fast", profiles)


# --------------------------------------------------------------------------- run folder
def test_run_dir_refuses_reuse_and_resume_keeps_config(tmp_path):
    cfg = {"train": {"epochs": 2}, "seed": 0}
    run, got = RunDir.open(tmp_path / "run", cfg)
    assert got == cfg and (tmp_path / "run" / "config.yaml").is_file()
    run.append_history({"epoch": 1, "loss": 0.5})
    run.append_history({"epoch": 2, "loss": 0.25})
    run.close()
    with pytest.raises(UserError, match="not empty; pass --resume"):
        RunDir.open(tmp_path / "run", cfg)
    with pytest.raises(UserError, match="differ from the run's config in seed"):
        RunDir.open(tmp_path / "run", {**cfg, "seed": 1}, resume=True)
    before = (tmp_path / "run" / "config.yaml").read_text()
    assert (tmp_path / "run" / "config.yaml").read_text() == before  # failed relaunch: untouched
    run, _ = RunDir.open(tmp_path / "run", {"train": {"epochs": 4}, "seed": 0}, resume=True,
                         allow_on_resume=["train.epochs"])
    run.truncate_history(lambda r: int(r["epoch"]) <= 1)
    assert [r["epoch"] for r in run.read_history()] == ["1"]
    run.close()
    run, _ = RunDir.open(tmp_path / "run", cfg, overwrite=True)
    assert run.read_history() == []
    run.close()
    with pytest.raises(UserError, match="nothing to resume"):
        RunDir.open(tmp_path / "fresh", cfg, resume=True)


def test_run_refused_for_bad_input_leaves_the_folder_as_it_found_it(tmp_path):
    cfg = {"seed": 0}
    with pytest.raises(UserError, match="bad data"), RunDir.open(tmp_path / "new", cfg)[0] as run:
        run.logger("t").info("checking data")
        raise UserError("bad data")
    assert not (tmp_path / "new").exists()  # created by the run: gone again
    (tmp_path / "kept").mkdir()
    with pytest.raises(UserError), RunDir.open(tmp_path / "kept", cfg)[0]:
        raise UserError("bad data")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == [".lock"]
    RunDir.open(tmp_path / "kept", cfg)[0].close()  # the relaunch needs no --overwrite
    with pytest.raises(UserError), RunDir.open(tmp_path / "kept", cfg, resume=True)[0]:
        raise UserError("bad data")  # a resume never loses its folder
    assert (tmp_path / "kept" / "config.yaml").is_file()
    run = RunDir.open(tmp_path / "trained", cfg)[0]
    run.append_history({"epoch": 1})
    with pytest.raises(UserError), run:
        raise UserError("bad data after an epoch")
    assert (tmp_path / "trained" / "history.csv").is_file()  # trained: nothing removed
    with pytest.raises(RuntimeError), RunDir.open(tmp_path / "crash", cfg)[0]:
        raise RuntimeError("not a user error")
    assert (tmp_path / "crash" / "config.yaml").is_file()


def test_lock_refuses_a_second_concurrent_run(tmp_path):
    with RunDir.open(tmp_path / "run", {"a": 1})[0]:
        code = ("import sys; from shared.errors import UserError; from shared.runs import RunDir\n"
                "try:\n    RunDir.open(sys.argv[1], {'a': 1}, resume=True)\n"
                "except UserError as e:\n    print(e); sys.exit(2)\n")
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and "another run is using" in proc.stdout
    RunDir.open(tmp_path / "run", {"a": 1}, resume=True)[0].close()  # released


def test_output_paths(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_output_dir(f / "sub")
    with pytest.raises(UserError, match="would overwrite the input"):
        check_not_inputs([str(f)], [f])
    check_not_inputs([tmp_path / "out.tif"], [f])


def test_cli_main_one_line_errors(tmp_path, capsys):
    def bad(argv):
        raise UserError(f"{tmp_path}/x.png: truncated PNG")

    def oserr(argv):
        open(tmp_path / "missing" / "f.txt")  # noqa: SIM115

    assert cli_main(bad) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}/x.png: truncated PNG"
    assert cli_main(oserr) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing/f.txt" in err

    def interrupted(argv):
        raise RunInterrupted(signal.SIGTERM, tmp_path)

    assert cli_main(interrupted) == 143


def test_graceful_stop_flags_the_signal():
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
        with pytest.raises(RunInterrupted) as info:
            stop.raise_if_requested("runs/x")
    assert info.value.exit_code == 143


def test_run_config_on_resume_uses_saved_config(tmp_path, profiles):
    parser = add_run_arguments(argparse.ArgumentParser(), default_config="quick")
    args = parser.parse_args(["--run-dir", str(tmp_path / "r")])
    cfg = run_config(args, profiles)
    RunDir.open(args.run_dir, {**cfg, "seed": 5})[0].close()
    args = parser.parse_args(["--run-dir", str(tmp_path / "r"), "--resume", "--set",
                              "train.epochs=4"])
    assert run_config(args, profiles) == {"train": {"epochs": 4, "lr": 0.1}, "seed": 5}
    args = parser.parse_args(["--run-dir", str(tmp_path / "r"), "--resume", "--set", "nope=1"])
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        run_config(args, profiles)


def test_finished_run_and_derive_seed(tmp_path):
    cfg = {"a": 1}
    run, _ = RunDir.open(tmp_path / "r", cfg)
    assert not finished_run(tmp_path / "r", cfg, "v1")
    run.write_summary({"code_version": "v1"})
    run.close()
    assert finished_run(tmp_path / "r", cfg, "v1")
    assert not finished_run(tmp_path / "r", {"a": 2}, "v1")
    assert not finished_run(tmp_path / "r", cfg, "v2")
    assert derive_seed(3, 1) == derive_seed(3, 1) != derive_seed(3, 2)
