"""shared.cluster (issue 28): one task list over scenes, in-process or on a Dask LocalCluster.

The task here is framework-free (a "model" that is a number read from a file, scenes that are
text files of numbers), so the cluster behaviour is tested in seconds; the ice and crater
predictors have their own LocalCluster tests beside them.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shared.atomic import atomic_write_text
from shared.cluster import (
    Job,
    SceneTask,
    done_path,
    in_share,
    parse_scheduler,
    parse_share,
    report_failures,
    run_scenes,
    user_error_types,
)
from shared.configs import REPO_ROOT as REPO
from shared.errors import UserError


@pytest.fixture(autouse=True)
def _no_dashboard(monkeypatch):
    monkeypatch.setenv("PLANETARY_DASK_DASHBOARD", "none")


@pytest.fixture
def importable(monkeypatch):
    """Workers (spawned processes, parent's sys.path) import this module as tests.<name>."""
    monkeypatch.syspath_prepend(str(REPO))


# ------------------------------------------------------------------ the task under test
def load_factor(path: str, log: str) -> float:
    """The "model": a number; each load is logged with the worker's pid."""
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    return float(Path(path).read_text())


def scale_scene(factor: float, task: SceneTask, out: Path) -> dict:
    """Read a scene (numbers, one a line), write the scaled numbers and their sum."""
    runs = task.options.get("runs")
    if runs:
        with open(runs, "a", encoding="utf-8") as fh:
            fh.write(f"{task.name}\n")
    text = Path(task.path).read_text(encoding="utf-8")
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise UserError(f"{task.path}: not a list of numbers") from None
    kill = task.options.get("kill_once")
    if kill and not Path(kill).exists():
        Path(kill).write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-task, Dask retries it
    if task.options.get("kill_always"):
        os.kill(os.getpid(), signal.SIGKILL)  # e.g. a scene that runs every worker out of memory
    scaled = [factor * v for v in values]
    atomic_write_text(out / "scaled" / f"{task.name}.txt", "\n".join(map(repr, scaled)) + "\n")
    return {"sum": sum(scaled), "n": len(scaled)}


def make_scenes(root: Path, n: int = 5, bad: tuple[int, ...] = ()) -> list[Path]:
    paths = []
    for i in range(n):
        p = root / "scenes" / f"scene{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("oops\n" if i in bad else "\n".join(str(i * 10 + k) for k in range(4)))
        paths.append(p)
    return paths


def make_job(tmp: Path, out: Path) -> Job:
    factor = tmp / "model.txt"
    factor.write_text("2.5")
    return Job(work=scale_scene, out=str(out), load=load_factor,
               load_args=(str(factor), str(tmp / "loads.log")), signature="factor 2.5",
               user_errors=user_error_types())


def tasks_of(paths, **options) -> list[SceneTask]:
    return [SceneTask(p.stem, str(p), dict(options)) for p in paths]


def outputs(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((out / "scaled").iterdir())}


# ------------------------------------------------------------------ option parsing
def test_parse_scheduler():
    assert parse_scheduler("local:2") == "local:2"
    assert parse_scheduler("local:03") == "local:3"
    assert parse_scheduler("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"
    assert parse_scheduler("node12:8786") == "node12:8786"
    assert parse_scheduler("local").startswith("local:")
    for bad in ("local:0", "local:x", "local:-1", "slurm", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_scheduler(bad)


def test_share_is_a_partition_of_the_task_list():
    names = [f"img{i}" for i in range(50)]
    shares = [[n for n in names if in_share(n, (i, 3))] for i in range(3)]
    assert sorted(sum(shares, [])) == sorted(names)
    assert all(shares)
    with pytest.raises(ValueError):
        parse_share("3/3")


def test_help_does_not_import_dask():
    code = ("import argparse, sys; from shared.cluster import add_scheduler_argument; "
            "p = argparse.ArgumentParser(); add_scheduler_argument(p); "
            "a = p.parse_args(['--scheduler', 'local:2']); "
            "assert a.scheduler == 'local:2'; "
            "assert not any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------ in-process
def test_in_process_bad_scene_recorded_and_rerun_skips(tmp_path):
    paths = make_scenes(tmp_path, 4, bad=(2,))
    out = tmp_path / "out"
    job = make_job(tmp_path, out)
    s = run_scenes(job, tasks_of(paths), progress=False, echo=lambda _: None)
    lines = []
    report_failures(s, lines.append)
    assert lines == [f"warning: skipped {paths[2]}: not a list of numbers"]
    assert [d["name"] for d in s.done] == ["scene0", "scene1", "scene3"]
    assert [f["name"] for f in s.failed] == ["scene2"]
    assert "scene2.txt: not a list of numbers" in s.failed[0]["error"]
    summary = json.loads((out / "scenes.json").read_text())
    assert summary["counts"] == {"done": 3, "skipped": 0, "failed": 1}
    assert json.loads(done_path(out, "scene1").read_text())["record"]["sum"] == 2.5 * 46
    # re-run: the done scenes are skipped, the bad one is tried again (and fails again)
    again = run_scenes(job, tasks_of(paths), progress=False, echo=lambda _: None)
    assert again.skipped == ["scene0", "scene1", "scene3"] and not again.done
    assert [f["name"] for f in again.failed] == ["scene2"]
    # fixed, it is done; nothing else runs
    paths[2].write_text("1\n2\n")
    third = run_scenes(job, tasks_of(paths), progress=False, echo=lambda _: None)
    assert [d["name"] for d in third.done] == ["scene2"] and len(third.skipped) == 3


def test_every_scene_failed_is_a_user_error(tmp_path):
    paths = make_scenes(tmp_path, 2, bad=(0, 1))
    job = make_job(tmp_path, tmp_path / "out")
    s = run_scenes(job, tasks_of(paths), progress=False)
    with pytest.raises(UserError, match=r"every input failed \(2\); first: .*scene0.txt"):
        report_failures(s)
    one = run_scenes(job, tasks_of(paths[:1]), progress=False)
    with pytest.raises(UserError) as err:
        report_failures(one)
    assert str(err.value) == f"{paths[0]}: not a list of numbers"


def test_other_signature_refused(tmp_path):
    paths = make_scenes(tmp_path, 2)
    out = tmp_path / "out"
    job = make_job(tmp_path, out)
    run_scenes(job, tasks_of(paths), progress=False, echo=lambda _: None)
    other = Job(**{**job.__dict__, "signature": "factor 3"})
    with pytest.raises(UserError, match="another model"):
        run_scenes(other, tasks_of(paths), progress=False, echo=lambda _: None)


def test_duplicate_names_refused(tmp_path):
    paths = make_scenes(tmp_path, 2)
    job = make_job(tmp_path, tmp_path / "out")
    with pytest.raises(UserError, match="share the scene name"):
        run_scenes(job, [SceneTask("a", str(paths[0])), SceneTask("a", str(paths[1]))],
                   progress=False)


def test_a_bug_is_not_a_scene_failure(tmp_path):
    def broken(resource, task, out):
        raise KeyError("bug")

    paths = make_scenes(tmp_path, 2)
    job = Job(work=broken, out=str(tmp_path / "out"), user_errors=user_error_types())
    with pytest.raises(KeyError):
        run_scenes(job, tasks_of(paths), progress=False)


# ------------------------------------------------------------------ LocalCluster
def test_local_cluster_equals_in_process_with_a_killed_worker_and_a_bad_scene(tmp_path,
                                                                             importable):
    paths = make_scenes(tmp_path, 6, bad=(4,))
    here = tmp_path / "here"
    run_scenes(make_job(tmp_path, here), tasks_of(paths), progress=False,
               echo=lambda _: None)
    (tmp_path / "loads.log").unlink()

    out = tmp_path / "cluster"
    runs = tmp_path / "runs.log"
    tasks = tasks_of(paths, runs=str(runs))
    tasks[1] = SceneTask(tasks[1].name, tasks[1].path,
                         {"runs": str(runs), "kill_once": str(tmp_path / "killed")})
    lines = []
    environ = dict(os.environ)
    s = run_scenes(make_job(tmp_path, out), tasks, "local:2", progress=False,
                   echo=lines.append)
    assert dict(os.environ) == environ  # the nannies' variables do not stay in the client
    assert (tmp_path / "killed").exists()  # a worker process really died mid-task
    assert any("dashboard" in line for line in lines)
    assert outputs(out) == outputs(here)  # nothing lost, nothing different
    assert sorted(d["name"] for d in s.done) == ["scene0", "scene1", "scene2", "scene3",
                                                 "scene5"]
    assert [f["name"] for f in s.failed] == ["scene4"]
    assert "not a list of numbers" in s.failed[0]["error"]
    ran = runs.read_text().split()
    assert ran.count("scene1") == 2  # killed once, retried on a worker
    assert all(ran.count(f"scene{i}") == 1 for i in (0, 2, 3, 4, 5))  # the others once each
    for name in ("scene0", "scene1", "scene5"):
        a = json.loads(done_path(here, name).read_text())["record"]
        assert json.loads(done_path(out, name).read_text())["record"] == a
    # the model is loaded once per worker process, not per task (the killed worker's
    # replacement loads it again)
    loads = (tmp_path / "loads.log").read_text().split()
    assert len(loads) <= 3 and len(set(loads)) == len(loads)
    # a re-run on the cluster skips every done scene and runs only the bad one again
    again = run_scenes(make_job(tmp_path, out), tasks, "local:2", progress=False,
                       echo=lambda _: None)
    assert len(again.skipped) == 5 and not again.done and len(again.failed) == 1
    assert runs.read_text().split().count("scene0") == 1


def test_a_scene_that_kills_every_worker_is_a_failure_not_a_crash(tmp_path, importable):
    import dask

    paths = make_scenes(tmp_path, 3)
    tasks = tasks_of(paths)
    tasks[0] = SceneTask(tasks[0].name, tasks[0].path, {"kill_always": True})
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        s = run_scenes(make_job(tmp_path, tmp_path / "out"), tasks, "local:2", progress=False,
                       echo=lambda _: None)
    failed = {f["name"]: f["error"] for f in s.failed}
    assert "scene0" in failed and "died each time it was tried" in failed["scene0"]
    # a scene queued on the same dying workers may be failed with it; none is lost: the rest
    # are done, and a re-run without the culprit does what is left
    assert sorted([*failed, *(d["name"] for d in s.done)]) == ["scene0", "scene1", "scene2"]
    again = run_scenes(make_job(tmp_path, tmp_path / "out"), tasks[1:], progress=False)
    assert len(again.done) + len(again.skipped) == 2 and not again.failed
