"""One task list over scenes, run in this process or on a Dask cluster (``--scheduler``).

Every batch predictor cuts its work into one task per scene (an image, a raster, a chunk
folder) and hands the list to :func:`run_scenes`:

* ``--scheduler`` absent: the tasks run one after the other in this process (nothing of Dask is
  imported);
* ``local:N``: a :class:`distributed.LocalCluster` of N worker processes, one task at a time
  each (``threads_per_worker=1``), its threads for the model set by the predictor;
* an address (``tcp://host:8786``): an existing cluster, e.g. one that dask-jobqueue's
  ``SLURMCluster`` started (see the README).

A task is ``job.work(resource, task, out)``: it reads its scene from the path it is given and
writes the scene's outputs atomically (``shared.atomic``) under ``out``. The *resource* (the
model) is built by ``job.load(*job.load_args)`` once per worker process and kept there for the
following tasks (:func:`worker_resource`), so a worker holds one model and one scene at a time:
its memory is bounded as in-process.

Exactly once: after a scene's outputs are written, its done marker ``<out>/done/<name>.json``
(with what the task returned) is written atomically. A re-run skips the scenes that have a
marker; a worker killed mid-task has its task run again elsewhere by Dask, and since the task
writes temporary files and renames them, the retry overwrites nothing half-written and the
final outputs are those of an in-process run. A scene that fails with a user error (a bad
file: ``job.user_errors``) is recorded with its one-line error and the others go on; any other
exception (a bug) stops the run with its traceback. The client shows one progress bar over the
tasks, prints the dashboard address, and writes ``<out>/scenes.json``: which scenes were done,
skipped (already done) and failed. Summary files (catalogues, survey tables) are then built by
the predictor from the per-scene outputs, the same way after either kind of run.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import UserError

DONE_DIR = "done"
SUMMARY_NAME = "scenes.json"
SCHEDULER_HELP = ("run the scenes on a Dask cluster: local:N (N worker processes on this "
                  "machine) or the address of a running scheduler (tcp://host:8786); "
                  "default: in this process, without Dask")


class SchedulerError(UserError):
    """A --scheduler that cannot be used (bad spelling, Dask missing, scheduler unreachable)."""


# --------------------------------------------------------------------------- the option
def parse_scheduler(text: str) -> str:
    """argparse type of ``--scheduler``: ``local:N`` (N >= 1), ``local`` (one worker per CPU)
    or a scheduler address (``tcp://host:8786``, ``tls://...``, ``host:8786``)."""
    import argparse

    value = text.strip()
    if value == "local":
        return f"local:{os.cpu_count() or 1}"
    if value.startswith("local:"):
        n = value.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(f"local:N needs a whole number N >= 1, got {text!r}")
        return f"local:{int(n)}"
    if re.fullmatch(r"[a-z]+://\S+", value) or re.fullmatch(r"[\w.\-]+:\d+", value):
        return value
    raise argparse.ArgumentTypeError(
        f"expected local:N or a scheduler address such as tcp://host:8786, got {text!r}")


def local_threads(scheduler: str | None, default: int | None = None) -> int | None:
    """Framework threads per worker for a predictor without ``--threads``: this machine's CPUs
    shared out over ``local:N``'s workers; ``default`` otherwise (None: the framework's)."""
    if scheduler and scheduler.startswith("local:"):
        return max(1, (os.cpu_count() or 1) // int(scheduler.split(":", 1)[1]))
    return default


def add_scheduler_argument(parser) -> None:
    """Add ``--scheduler`` (the one spelling of every batch predictor)."""
    parser.add_argument("--scheduler", type=parse_scheduler, default=None,
                        metavar="local:N|ADDRESS", help=SCHEDULER_HELP)


def parse_share(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N (``--shard``: a share of the task list)."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard i/N needs N >= 1 and 0 <= i < N, got {text!r}")
    return i, n


def in_share(name: str, share: tuple[int, int] | None) -> bool:
    """Whether scene ``name`` is in share ``i/N``: stable CRC32 of the name modulo N, so the N
    shares are disjoint, cover every scene and depend neither on order nor on the machine."""
    if share is None:
        return True
    i, n = share
    return zlib.crc32(name.encode("utf-8")) % n == i


# --------------------------------------------------------------------------- tasks and jobs
@dataclass(frozen=True)
class SceneTask:
    """One scene: its unique ``name`` (outputs and done marker are named after it), the
    ``path`` the worker reads, and per-scene ``options`` (small, picklable)."""

    name: str
    path: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """What every task of one run shares (sent to the workers with each task, so keep it small).

    ``work(resource, task, out) -> dict`` writes one scene's outputs under ``out`` and returns
    a JSON-able record (kept in the done marker). ``load(*load_args)`` builds the resource
    (the model) once per worker; both must be module-level functions so that workers import
    them. ``signature`` names the model and options: a marker left by a run with another
    signature is refused, so that a re-run never mixes two models' outputs. ``user_errors``:
    the exceptions that mean a bad scene (recorded; the run goes on)."""

    work: Callable[[Any, SceneTask, Path], dict]
    out: str
    load: Callable[..., Any] | None = None
    load_args: tuple = ()
    signature: str = ""
    user_errors: tuple[type[BaseException], ...] = ()


def user_error_types() -> tuple[type[BaseException], ...]:
    """The errors that mean a bad input file: the project's user errors (every reader's error
    subclasses ``UserError``) and OS errors (unreadable, vanished)."""
    return (UserError, OSError)


def marker_name(name: str) -> str:
    """The file name of a scene's done marker (names with a path separator are quoted)."""
    if re.fullmatch(r"[\w.+\-]+", name) and not name.startswith("."):
        return f"{name}.json"
    from urllib.parse import quote

    return f"{quote(name, safe='')}.json"


def done_path(out: str | os.PathLike, name: str) -> Path:
    return Path(out) / DONE_DIR / marker_name(name)


def read_marker(out: str | os.PathLike, name: str) -> dict | None:
    """A scene's done marker, or None when the scene is not done."""
    path = done_path(out, name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable done marker ({exc}); delete it to redo the "
                        "scene") from None


# --------------------------------------------------------------------------- worker side
_RESOURCES: dict[tuple, Any] = {}


def worker_resource(load: Callable[..., Any] | None, args: tuple = ()) -> Any:
    """``load(*args)``, built once per process and kept for the next tasks (one at a time:
    a new key drops the old resource, so a worker never holds two models)."""
    if load is None:
        return None
    key = (load.__module__, load.__qualname__, repr(args))
    if key not in _RESOURCES:
        _RESOURCES.clear()
        _RESOURCES[key] = load(*args)
    return _RESOURCES[key]


def clear_resources() -> None:
    _RESOURCES.clear()


def run_task(job: Job, task: SceneTask, resource: Any = None) -> dict:
    """Run one scene (on a worker or here): outputs, then the done marker; a user error is
    returned as a failure record. Idempotent: a retry after a kill redoes the scene into
    temporary files and renames them; a retry after the marker was written returns it."""
    from shared.atomic import atomic_write_json
    from shared.runs import one_line

    base = {"name": task.name, "path": task.path}
    marker = read_marker(job.out, task.name)
    if marker is not None:  # done by an earlier attempt whose worker died before reporting
        return base | {"status": "done", "record": marker.get("record"),
                       "seconds": marker.get("seconds", 0.0)}
    if resource is None:
        resource = worker_resource(job.load, job.load_args)
    start = time.perf_counter()
    try:
        record = job.work(resource, task, Path(job.out))
    except job.user_errors as exc:
        msg = one_line(exc)
        if task.path not in msg:
            msg = f"{task.path}: {msg}"
        return base | {"status": "failed", "error": msg}
    seconds = round(time.perf_counter() - start, 3)
    atomic_write_json(done_path(job.out, task.name),
                      base | {"signature": job.signature, "record": record, "seconds": seconds})
    return base | {"status": "done", "record": record, "seconds": seconds}


# --------------------------------------------------------------------------- client side
@dataclass
class ScenesSummary:
    """What a run did: results of the scenes run now, names skipped (done before), failures."""

    done: list[dict]
    skipped: list[str]
    failed: list[dict]
    scheduler: str
    seconds: float

    def line(self) -> str:
        return (f"{len(self.done)} scene(s) done, {len(self.skipped)} skipped (done before), "
                f"{len(self.failed)} failed")

    def as_dict(self) -> dict:
        return {"scheduler": self.scheduler, "seconds": round(self.seconds, 3),
                "counts": {"done": len(self.done), "skipped": len(self.skipped),
                           "failed": len(self.failed)},
                "done": [d["name"] for d in self.done], "skipped": self.skipped,
                "failed": [{"name": f["name"], "path": f["path"], "error": f["error"]}
                           for f in self.failed]}


def file_signature(path: str | os.PathLike) -> str:
    """A model file for :attr:`Job.signature`: its absolute path, size and modification time
    (a model retrained into the same file is another model)."""
    p = Path(path).resolve()
    st = p.stat()
    return f"{p} ({st.st_size} bytes, mtime {st.st_mtime_ns})"


def run_scenes(job: Job, tasks: Sequence[SceneTask], scheduler: str | None = None, *,
               threads: int = 1, resource: Any = None, progress: bool = True,
               desc: str = "scenes", echo: Callable[[str], None] | None = None,
               client: Any = None, resume: bool = True) -> ScenesSummary:
    """Run every task not done yet, here (``scheduler`` None) or on a Dask cluster; write
    ``<out>/scenes.json`` and return the summary. ``resource``: an already loaded model for an
    in-process run (else ``job.load`` builds it); ``threads``: threads per worker process for
    the model (``local:N`` only; the predictor's loader sets them in the framework too);
    ``client``: a connected ``distributed.Client`` to use instead of ``scheduler`` (kept open:
    the bench times runs on warm workers); ``resume=False``: every task is run again (its
    marker removed first; for library calls with a model object, whose weights no signature
    can name)."""
    from shared.atomic import atomic_write_json

    echo = echo or (lambda text: print(text, file=sys.stderr))
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"several inputs share the scene name(s) {dup[:5]}")
    out = Path(job.out)
    todo, skipped = [], []
    if not resume:
        for task in tasks:
            done_path(out, task.name).unlink(missing_ok=True)
    for task in tasks:
        marker = read_marker(out, task.name)
        if marker is None:
            todo.append(task)
            continue
        if marker.get("signature", "") != job.signature:
            raise UserError(f"{done_path(out, task.name)}: {task.name} was done with another "
                            f"model or other options ({marker.get('signature')!r}); use another"
                            f" output folder or delete {out / DONE_DIR}")
        skipped.append(task.name)
    start = time.perf_counter()
    if scheduler is None and client is None:
        results = _run_here(job, todo, resource, progress, desc)
    else:
        results = _run_on_cluster(job, todo, scheduler, threads, progress, desc, echo, client)
    done = [r for r in results if r["status"] == "done"]
    failed = [r for r in results if r["status"] == "failed"]
    summary = ScenesSummary(done, skipped, failed,
                            scheduler or ("client" if client is not None else "in-process"),
                            time.perf_counter() - start)
    atomic_write_json(out / SUMMARY_NAME, summary.as_dict())
    return summary


def report_failures(summary: ScenesSummary, echo: Callable[[str], None] | None = None,
                    raise_if_all: bool = True) -> None:
    """Each failed scene as one ``warning: skipped <error>`` line; when nothing was done or
    done before (every input failed) a ``UserError`` instead: the one error itself for a
    single input, else the count and the first error (``raise_if_all=False``: warnings only)."""
    echo = echo or (lambda text: print(text, file=sys.stderr))
    failed = summary.failed
    if raise_if_all and failed and not (summary.done or summary.skipped):
        if len(failed) == 1:
            raise UserError(failed[0]["error"])
        raise UserError(f"every input failed ({len(failed)}); first: {failed[0]['error']}")
    for f in failed:
        echo(f"warning: skipped {f['error']}")


def _bar(total: int, progress: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="scene", disable=not progress or total == 0)


def _run_here(job: Job, todo: Sequence[SceneTask], resource: Any, progress: bool,
              desc: str) -> list[dict]:
    results = []
    try:
        with _bar(len(todo), progress, desc) as bar:
            for task in todo:
                results.append(run_task(job, task, resource))
                bar.update(1)
    finally:
        clear_resources()
    return results


def _run_on_cluster(job: Job, todo: Sequence[SceneTask], scheduler: str | None, threads: int,
                    progress: bool, desc: str, echo: Callable[[str], None],
                    client: Any = None) -> list[dict]:
    import contextlib

    try:
        from distributed import KilledWorker, as_completed
    except ImportError:
        raise SchedulerError("--scheduler needs Dask: pip install 'dask[distributed]' (make "
                             "setup installs it)") from None
    with (contextlib.nullcontext(client) if client is not None
          else connect(scheduler, threads)) as client:
        echo(f"Dask scheduler {client.scheduler.address}; dashboard: {_dashboard(client)}")
        run = uuid.uuid4().hex[:8]
        futures = [client.submit(run_task, job, task, key=f"{desc}-{task.name}-{run}",
                                 pure=False) for task in todo]
        by_name: dict[str, dict] = {}
        task_of = dict(zip((f.key for f in futures), todo))
        try:
            with _bar(len(futures), progress, desc) as bar:
                for fut in as_completed(futures):
                    try:
                        result = fut.result()  # a bug on a worker is raised here, traceback
                    except KilledWorker:  # its workers died each time (it, or a scene
                        task = task_of[fut.key]  # beside it on them; not done: a re-run retries)
                        result = {"name": task.name, "path": task.path, "status": "failed",
                                  "error": f"{task.path}: the worker process running it died "
                                           "each time it was tried (out of memory, or killed); "
                                           "run again to retry it"}
                    by_name[result["name"]] = result
                    bar.update(1)
        except BaseException:
            client.cancel(futures)
            raise
    return [by_name[t.name] for t in todo]


class _Connection:
    """A client on a new LocalCluster (closed with it) or on an existing scheduler."""

    def __init__(self, scheduler: str, threads: int):
        self.scheduler, self.threads = scheduler, threads
        self.cluster = self.client = None
        self.environ: dict[str, str] | None = None

    def __enter__(self):
        import logging

        import dask
        from distributed import Client, LocalCluster

        if self.scheduler.startswith("local:"):
            n = int(self.scheduler.split(":", 1)[1])
            env = {k: str(self.threads) for k in
                   ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
            # the nannies run here and set their pre-spawn variables (OMP_NUM_THREADS,
            # PYTHONHASHSEED, ...) in this process's environment: put it back on exit
            self.environ = dict(os.environ)
            with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
                self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                            dashboard_address=_dashboard_address(),
                                            silence_logs=logging.ERROR, env=env)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(self.scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise SchedulerError(f"cannot reach the Dask scheduler at {self.scheduler}: "
                                     f"{exc}") from None
        return self.client

    def __exit__(self, *exc_info):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.environ is not None:
            for key in set(os.environ) - set(self.environ):
                del os.environ[key]
            os.environ.update(self.environ)
        return False


def _dashboard(client: Any) -> str:
    """The dashboard's address, or why there is none."""
    try:
        served = client.scheduler_info().get("services", {}).get("dashboard")
    except Exception:  # an old scheduler that does not say: give Dask's own guess
        served = True
    if not served:
        return "none (needs bokeh: pip install 'dask[diagnostics]')"
    return str(client.dashboard_link)


def _dashboard_address() -> str | None:
    """``:8787`` (Dask's usual port; a busy port is replaced by a free one), ``None`` without
    Bokeh, and whatever ``$PLANETARY_DASK_DASHBOARD`` says (tests: ``none``)."""
    value = os.environ.get("PLANETARY_DASK_DASHBOARD", ":8787")
    if value.lower() == "none":
        return None
    try:
        import bokeh  # noqa: F401  (the dashboard needs it)
    except ImportError:
        return None
    return value


def _load_here(job: Job) -> int:
    worker_resource(job.load, job.load_args)
    return os.getpid()


def warm_up(client: Any, job: Job) -> dict:
    """Build ``job``'s resource (load the model) on every worker of ``client`` now; returns
    worker address -> pid (the bench times runs on warm workers)."""
    return client.run(_load_here, job)


def connect(scheduler: str, threads: int = 1) -> _Connection:
    """``with connect("local:2") as client``: a Dask client on a new LocalCluster or on the
    scheduler at an address."""
    return _Connection(scheduler, threads)


def done_records(out: str | os.PathLike, tasks: Sequence[SceneTask]) -> Iterator[tuple[SceneTask,
                                                                                   dict]]:
    """(task, record) of every done scene of ``tasks``, in task order (for the summary files:
    the same merge after an in-process run, a cluster run or a resumed one)."""
    for task in tasks:
        marker = read_marker(out, task.name)
        if marker is not None:
            yield task, marker.get("record") or {}
