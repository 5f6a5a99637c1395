"""The run contract that every trainer of the five subprojects follows.

* Flags (``add_run_arguments``): ``--config PROFILE_OR_YAML``, ``--run-dir DIR``, ``--resume``,
  ``--overwrite``, ``--set key.sub=value`` (unknown keys are an error: ``shared.configs``).
* A run folder (``RunDir``) holds ``config.yaml`` (the resolved config, written only after the
  caller validated it), ``history.csv`` (one row per epoch or evaluation), ``train.log``,
  ``last.*`` / ``best.*`` checkpoints and ``summary.json`` once finished. Starting a run in a
  non-empty folder without ``--resume`` or ``--overwrite`` is refused, and a lock file refuses a
  second concurrent run in the same folder.
* ``GracefulStop``: SIGINT and SIGTERM set a flag; the trainer saves a resumable checkpoint at
  its next safe point and raises ``RunInterrupted``, which ``cli_main`` turns into one line and
  exit code 130 (SIGINT) or 143 (SIGTERM).
* ``cli_main``: every user error (a ``UserError``, defined in ``shared.errors``: the shared
  readers' errors and every subproject's error classes subclass it; an ``OSError`` on a path)
  is one line naming the file and what is wrong, exit code 2, no traceback; any other exception
  is a bug and shows its traceback.
* ``finished_run``: the one check that a finished run can be reused (same resolved config and
  same code version).
* ``check_paths`` / ``declare_paths`` (issue 27): the one check of every CLI's paths before it
  writes anything: an output that is an input, lies inside one or (files, run folders) contains
  one is refused, as is an output under a regular file; ``RunDir.open(inputs=...)`` applies it
  to the run folder, and ``--overwrite`` never empties a folder that is not a run folder.
* ``positive_int`` & co.: argparse types that refuse meaningless numbers up front;
  ``library_noise`` holds a third-party loader's output back so a refusal stays one line.

Framework-free: trainers keep their own checkpoint formats.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import errno
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from shared.atomic import atomic_write_json, atomic_write_text
from shared.configs import (
    REPO_ROOT,
    diff_keys,
    load_config,
    parse_set,
    read_yaml_mapping,
    set_dotted,
)
from shared.errors import UserError

CONFIG_NAME = "config.yaml"
HISTORY_NAME = "history.csv"
LOG_NAME = "train.log"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".lock"


class RunInterrupted(Exception):
    """Raised by a trainer after it saved a resumable checkpoint on SIGINT/SIGTERM."""

    def __init__(self, signum: int, run_dir: str | os.PathLike | None = None):
        self.signum = int(signum)
        self.run_dir = run_dir
        name = signal.Signals(self.signum).name
        where = f" in {run_dir}" if run_dir is not None else ""
        super().__init__(f"stopped by {name}: resumable checkpoint saved{where}; "
                         "continue with --resume")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# --------------------------------------------------------------------------- command line
def add_run_arguments(parser: argparse.ArgumentParser, default_config: str | None = "quick",
                      run_dir_aliases: Sequence[str] = (), config_aliases: Sequence[str] = (),
                      run_dir_required: bool = False) -> argparse.ArgumentParser:
    """The contract's flags; ``*_aliases`` keep the original repository's spellings."""
    parser.add_argument("--config", *config_aliases, dest="config", default=None,
                        metavar="PROFILE_OR_YAML",
                        help="profile name or YAML file" +
                        (f" (default: {default_config}; with --resume: the run's own "
                         "config.yaml)" if default_config else ""))
    parser.set_defaults(default_config=default_config)
    parser.add_argument("--run-dir", *run_dir_aliases, dest="run_dir", type=Path,
                        required=run_dir_required, metavar="DIR",
                        help="run folder (config.yaml, history.csv, train.log, checkpoints)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace what is in --run-dir (without it a used folder is refused)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=3 (repeatable; "
                        "unknown keys are an error)")
    return parser


def run_config(args: argparse.Namespace, profiles: Mapping[str, str | os.PathLike]
               ) -> dict[str, Any]:
    """The config a trainer validates, from the contract's flags.

    ``--resume`` without ``--config``: the run's saved ``config.yaml`` with the ``--set``
    overrides applied (keys must exist there). Otherwise ``--config`` (or the parser's default
    profile) through ``shared.configs.load_config``.
    """
    saved = Path(args.run_dir) / CONFIG_NAME if getattr(args, "run_dir", None) else None
    if getattr(args, "resume", False) and args.config is None and saved and not saved.is_file():
        # named before the default profile's data could be (issue 27)
        raise UserError(f"{args.run_dir}: nothing to resume (no {CONFIG_NAME}"
                        f"{'' if Path(args.run_dir).is_dir() else '; no such folder'}); "
                        "start the run without --resume")
    if getattr(args, "resume", False) and args.config is None and saved and saved.is_file():
        cfg = read_yaml_mapping(saved, UserError)
        schema = copy.deepcopy(cfg)
        for key, value in parse_set(args.overrides).items():
            set_dotted(cfg, key, value, schema)
        return cfg
    spec = args.config or getattr(args, "default_config", None)
    if spec is None:
        raise UserError("--config is required")
    return load_config(spec, profiles, args.overrides)


def cli_main(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a ``UserError`` becomes one line on stderr and exit code 2.

    An ``OSError`` naming a file (or a full disk, a denied write) is a user error too. Every
    other exception is a bug: it propagates with its traceback. A ``RunInterrupted`` exits with
    128 + the signal number, a bare Ctrl-C with 130.
    """
    try:
        return int(main(argv) or 0)
    except RunInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted (SIGINT)", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None and exc.errno not in (errno.ENOSPC, errno.EACCES):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An error message on one line (a third-party message may span many)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def library_noise():
    """Hold back what a third-party loader prints while it runs (Keras/TF: Python warnings,
    absl and C++ lines on fd 2), so that a refusal stays one line.

    On an exception everything held back is dropped (the caller's one-line error names the
    file); on success each distinct Python warning is shown once and the native output is
    written back to stderr.
    """
    import tempfile
    import warnings

    sys.stderr.flush()
    saved = os.dup(2)
    sink = tempfile.TemporaryFile()
    ok = False
    try:
        os.dup2(sink.fileno(), 2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        ok = True
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if ok:
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            if text.strip():
                sys.stderr.write(text)
            seen = set()
            for w in caught:
                key = (str(w.message), w.category)
                if key not in seen:
                    seen.add(key)
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        sink.close()


# Input-layer names of the Keras subprojects' models: a foreign model's error says whose it is.
KERAS_MODEL_OWNERS = {"chunk": "ice_patch_cnn (HiRISE ice-patch chunk classifier)",
                      "image": "crater_resunet (crater ResNet-UNet)"}


def keras_model_owner(path: str | os.PathLike) -> str | None:
    """Which subproject a ``.keras`` file's model belongs to, from its input layer's name and
    input shape in ``config.json`` (read without deserialising anything), or None."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            cfg = json.loads(zf.read("config.json"))
        layers = cfg["config"]["layers"]
        first = layers[0]
        name = first.get("name") or first["config"].get("name")
        shape = first["config"].get("batch_shape") or first["config"].get("batch_input_shape")
    except (OSError, KeyError, IndexError, TypeError, ValueError, zipfile.BadZipFile):
        return None
    owner = KERAS_MODEL_OWNERS.get(str(name))
    if owner is None:
        return None
    return f"{owner}, input {tuple(shape[1:]) if shape else '?'}"


def quiet_tensorflow(level: str = "3") -> None:
    """Import Keras/TensorFlow with the process's native stderr (fd 2) sent to /dev/null.

    TensorFlow's C++ start-up lines ("All log messages before absl::InitializeLog() ...",
    "Could not find cuda drivers ...") are written to fd 2 at import, before
    ``TF_CPP_MIN_LOG_LEVEL`` (set here to ``level`` unless the user set it) applies, and
    would bury a CLI's one-line error. A Python exception from the import still reaches the
    user: fd 2 is restored before it propagates. Call it after argument parsing.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", level)
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_not_inputs(outputs: Iterable[str | os.PathLike | None],
                     inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output path that is one of the inputs or lies inside one (an output folder
    of new files may contain its inputs: ``predict scene.tif --out .``)."""
    check_paths(outputs, inputs, containing=False)


def _flat(values: Iterable[Any]) -> list[Path]:
    out: list[Path] = []
    for v in values:
        if v is None or v == "":
            continue
        if isinstance(v, (list, tuple, set)):
            out += _flat(v)
        else:
            out.append(Path(v))
    return out


def check_paths(outputs: Iterable[Any], inputs: Iterable[Any] = (), containing: bool = True
                ) -> None:
    """The one check of a command's paths before it writes anything.

    Every output (file or folder) is refused when it is an input, lies inside an input folder
    (a survey would read its own output next time), or, with ``containing``, contains an input
    (a run folder that ``--overwrite`` empties, a file output); and when it lies under a
    regular file. Symbolic links are resolved first. ``None`` entries (options not given) and
    nested lists (``nargs``) are allowed. ``containing=False`` is for output folders that only
    receive new files beside what is there.
    """
    ins = [(p, p.resolve()) for p in _flat(inputs)]
    for out in _flat(outputs):
        check_output_dir(out.parent)
        real = out.resolve()
        for given, src in ins:
            if real == src:
                what = "would overwrite the input"
            elif src in real.parents:
                what = "lies inside the input"
            elif containing and real in src.parents:
                what = "contains the input"
            else:
                continue
            raise UserError(f"{out}: the output {what} {given}; choose an output path outside "
                            "the command's inputs")


def declare_paths(parser: argparse.ArgumentParser, inputs: Sequence[str] = (),
                  outputs: Sequence[str] = (), folders: Sequence[str] = ()
                  ) -> argparse.ArgumentParser:
    """Declare which options (``dest`` names) of ``parser`` are inputs and which are outputs.

    The parser's ``parse_args`` / ``parse_known_args`` then run ``check_paths`` on the parsed
    values, so every CLI that declares its paths gets the same refusal before anything is
    written. ``outputs`` are files or folders that must neither be, lie inside nor contain an
    input; ``folders`` are output folders that only receive new files (they may contain an
    input, e.g. ``--out .``). Options missing from a namespace (another subcommand) are skipped.
    """
    parser._contract_paths = (tuple(inputs), tuple(outputs), tuple(folders))  # type: ignore
    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, extra = original(args, namespace)
        ins, outs, dirs = parser._contract_paths  # type: ignore[attr-defined]
        sources = [getattr(ns, d, None) for d in ins]
        check_paths([getattr(ns, d, None) for d in outs], sources)
        check_paths([getattr(ns, d, None) for d in dirs], sources, containing=False)
        return ns, extra

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]
    return parser


def check_output_dir(path: str | os.PathLike) -> Path:
    """``path`` can hold outputs: a folder or nothing yet, and not below a regular file."""
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{path}: cannot write there, {parent} is a file")
            break
    return path


# --------------------------------------------------------------------------- numeric options
def _number_type(kind: type, test: Callable[[float], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}") from None
        if isinstance(value, float) and not math.isfinite(value) or not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}")
        return value

    parse.__name__ = what
    return parse


# argparse ``type=`` validators: a bad value is one usage error (exit 2) before anything runs.
positive_int = _number_type(int, lambda v: v >= 1, "whole number of at least 1")
nonnegative_int = _number_type(int, lambda v: v >= 0, "whole number of at least 0")
finite_float = _number_type(float, lambda v: True, "finite number")
positive_float = _number_type(float, lambda v: v > 0, "positive finite number")
nonnegative_float = _number_type(float, lambda v: v >= 0, "finite number of at least 0")
fraction = _number_type(float, lambda v: 0 <= v <= 1, "number between 0 and 1")
open_fraction = _number_type(float, lambda v: 0 <= v < 1, "number in [0, 1)")


# --------------------------------------------------------------------------- signals
class GracefulStop:
    """Context manager: SIGINT/SIGTERM set ``signum`` instead of killing the process.

    The trainer checks ``requested`` at safe points (after an optimiser step or an epoch), saves
    a resumable checkpoint and calls ``raise_if_requested(run_dir)``. A second signal while the
    first is being handled stops at once with ``KeyboardInterrupt``.
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)):
        self.signals = tuple(signals)
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame):  # noqa: ARG002
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> GracefulStop:
        with contextlib.suppress(ValueError):  # not the main thread: leave handlers alone
            for sig in self.signals:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def raise_if_requested(self, run_dir: str | os.PathLike | None = None) -> None:
        if self.signum is not None:
            raise RunInterrupted(self.signum, run_dir)


# --------------------------------------------------------------------------- run folder
class RunDir:
    """A run folder, locked for the life of the object (use it as a context manager).

    ``RunDir.open(path, cfg, resume=..., overwrite=...)`` applies the contract and returns the
    run folder and the config to train with: on ``resume`` the saved ``config.yaml`` wins, and
    a requested config that differs in any key outside ``allow_on_resume`` is refused (so a
    relaunch with other settings can never silently continue, or spoil, the old run).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._created = False  # the folder did not exist before this run
        self._fresh = False  # this run wrote a new config.yaml (not a resume)

    # -- opening ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, cfg: Mapping[str, Any], *, resume: bool = False,
             overwrite: bool = False, allow_on_resume: Iterable[str] = (),
             inputs: Iterable[Any] = ()) -> tuple[RunDir, dict[str, Any]]:
        """``inputs``: the paths the run reads (data folders, an init checkpoint); the run
        folder may neither be, contain nor lie inside one of them."""
        if resume and overwrite:
            raise UserError("--resume and --overwrite exclude each other")
        check_output_dir(path)
        check_paths([path], inputs)
        run = cls(path)
        run._created = not run.path.exists()
        lock_existed = (run.path / LOCK_NAME).exists()
        run.path.mkdir(parents=True, exist_ok=True)
        run._acquire_lock()
        try:
            cfg = run._apply_contract(dict(cfg), resume, overwrite, tuple(allow_on_resume))
        except BaseException:
            run.close()
            if not lock_existed:  # a refused start leaves the folder as it found it
                with contextlib.suppress(OSError):
                    (run.path / LOCK_NAME).unlink()
                if run._created:
                    with contextlib.suppress(OSError):
                        run.path.rmdir()
            raise
        return run, cfg

    def _acquire_lock(self) -> None:
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{self.path}: another run is using this run folder "
                            f"(lock {self.path / LOCK_NAME} is held)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _apply_contract(self, cfg: dict, resume: bool, overwrite: bool,
                        allow: tuple[str, ...]) -> dict:
        contents = [p for p in self.path.iterdir() if p.name != LOCK_NAME]
        if resume:
            saved_path = self.path / CONFIG_NAME
            if not saved_path.is_file():
                raise UserError(f"{self.path}: nothing to resume (no {CONFIG_NAME}); "
                                "start the run without --resume")
            saved = read_yaml_mapping(saved_path, UserError)
            changed = [k for k in diff_keys(saved, cfg)
                       if not any(k == a or k.startswith(a + ".") for a in allow)]
            if changed:
                raise UserError(f"{saved_path}: --resume with settings that differ from the "
                                f"run's config in {', '.join(changed)}; resume without them or "
                                "start a new run folder")
            if cfg != saved:
                self.write_config(cfg)
            return cfg
        if contents and not overwrite:
            raise UserError(f"{self.path}: run folder is not empty; pass --resume to continue "
                            "that run or --overwrite to replace it")
        if contents and not (self.path / CONFIG_NAME).is_file():
            raise UserError(f"{self.path}: --overwrite refused: this folder is not a run folder "
                            f"(no {CONFIG_NAME}; it holds {len(contents)} other entries, e.g. "
                            f"{sorted(p.name for p in contents)[0]}); choose a new or empty "
                            "run folder")
        for p in contents:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        self.write_config(cfg)
        self._fresh = True
        return cfg

    def close(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # a user error (every user-error class of the project subclasses UserError) undoes the
        # fresh start; a crash keeps its files for the post-mortem
        if exc_type is not None and issubclass(exc_type, UserError):
            self._undo_fresh_start()
        self.close()

    def _undo_fresh_start(self) -> None:
        """A new run refused for bad input before it trained (only its own config, an empty
        history and the log are there) leaves the folder as it found it, so the corrected
        relaunch needs no --overwrite."""
        if not self._fresh:
            return
        own = {CONFIG_NAME, LOG_NAME, HISTORY_NAME, LOCK_NAME}
        contents = list(self.path.iterdir())
        if any(p.name not in own for p in contents) or self.read_history():
            return
        suffix = f".{self.path.resolve()}"
        for name, log in list(logging.Logger.manager.loggerDict.items()):
            if name.endswith(suffix) and isinstance(log, logging.Logger):
                for handler in list(log.handlers):
                    log.removeHandler(handler)
                    handler.close()
        for p in contents:
            if p.name != LOCK_NAME:
                p.unlink()
        if self._created:
            self.close()
            with contextlib.suppress(OSError):
                (self.path / LOCK_NAME).unlink()
                self.path.rmdir()

    # -- files --------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, cfg: Mapping[str, Any]) -> Path:
        text = yaml.safe_dump(_plain(cfg), sort_keys=False, allow_unicode=True)
        return atomic_write_text(self.path / CONFIG_NAME, text)

    def read_history(self) -> list[dict[str, str]]:
        path = self.path / HISTORY_NAME
        if not path.exists():
            return []
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def write_history(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        """Rewrite ``history.csv`` atomically with ``rows`` (columns: union, first-seen order)."""
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return atomic_write_text(self.path / HISTORY_NAME, buf.getvalue())

    def append_history(self, row: Mapping[str, Any]) -> Path:
        return self.write_history([*self.read_history(), dict(row)])

    def truncate_history(self, keep: Callable[[dict[str, str]], bool]) -> None:
        """Keep only the rows for which ``keep(row)`` holds (on resume: rows up to the
        checkpoint's epoch, so that a resumed history equals an uninterrupted one)."""
        rows = self.read_history()
        kept = [r for r in rows if keep(r)]
        if len(kept) != len(rows):
            self.write_history(kept)

    def logger(self, name: str, stream=None, level: int = logging.INFO) -> logging.Logger:
        """A logger writing to ``train.log`` (appended on resume) and to ``stream``."""
        log = logging.getLogger(f"{name}.{self.path.resolve()}")
        log.setLevel(level)
        log.propagate = False
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
        fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
        fh = logging.FileHandler(self.path / LOG_NAME, encoding="utf-8")
        fh.setFormatter(fmt)
        log.addHandler(fh)
        sh = logging.StreamHandler(stream or sys.stdout)
        sh.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(sh)
        return log

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.path / SUMMARY_NAME, dict(summary))


# --------------------------------------------------------------------------- reuse
def code_version(*packages: str | os.PathLike) -> str:
    """A hash of the source (``.py``, ``.yml``, ``.yaml``) of the given package folders and of
    ``shared/``: two runs with the same hash ran the same code."""
    h = hashlib.sha256()
    folders = sorted({Path(p).resolve() for p in packages} | {REPO_ROOT / "shared"})
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if (path.suffix in (".py", ".yml", ".yaml") and path.is_file()
                    and "__pycache__" not in path.parts and "tests" not in path.parts):
                h.update(str(path.relative_to(folder.parent)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def default_threads() -> int:
    """CPU threads when neither the config nor the command line says: $OMP_NUM_THREADS or 2."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    except ValueError:
        return 2


def resolve_run_threads(cfg: Mapping[str, Any], threads: int | None = None,
                        section: str = "train") -> dict[str, Any]:
    """A copy of ``cfg`` with ``<section>.threads`` resolved (``threads`` if given, else the
    config's, else :func:`default_threads`), so config.yaml records the count the run used:
    it can change a CPU run's arithmetic, so a resume with another count is refused by
    :meth:`RunDir.open` (issue 27)."""
    cfg = copy.deepcopy(dict(cfg))
    part = cfg[section]
    value = threads if threads is not None else part.get("threads")
    value = default_threads() if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{section}.threads must be a whole number >= 1, got {value!r}")
    part["threads"] = value
    return cfg


def finished_run(run_dir: str | os.PathLike, cfg: Mapping[str, Any], version: str) -> bool:
    """True when ``run_dir`` holds a finished run (``summary.json``) of the same resolved
    config and the same code version (``summary.json`` key ``code_version``)."""
    run_dir = Path(run_dir)
    summary, config = run_dir / SUMMARY_NAME, run_dir / CONFIG_NAME
    if not (summary.is_file() and config.is_file()):
        return False
    try:
        saved_cfg = read_yaml_mapping(config, UserError)
        saved = json.loads(summary.read_text(encoding="utf-8"))
    except (UserError, json.JSONDecodeError, OSError):
        return False
    return saved.get("code_version") == version and not diff_keys(saved_cfg, _plain(cfg))


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 31-bit seed from ``seed`` and keys such as the epoch: lets a resumed run draw exactly
    what an uninterrupted one draws without saving every RNG state."""
    h = hashlib.sha256(repr((int(seed), *keys)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def _plain(obj: Any) -> Any:
    """YAML/JSON-safe copy (paths to str, tuples to lists)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)
    return v
