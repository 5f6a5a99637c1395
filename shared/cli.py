"""The command-line vocabulary every CLI of the repository speaks (see the top README).

Trainers: ``--config`` (default ``quick``), ``--run-dir``, ``--resume``, ``--overwrite``,
``--set``, ``--data``, ``--precision`` (``shared.runs.add_run_arguments`` and the helpers below).
Predictors: positional inputs, ``--model PATH`` (the trained weights), ``--out``,
``--precision``, ``--device``, ``--no-progress``. Old spellings stay as hidden aliases
(``argparse.SUPPRESS``), so old command lines keep working without cluttering ``--help``.

Nothing here imports torch or TensorFlow at import time: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from shared.errors import UserError
from shared.precision import PRECISIONS


def hidden_alias(parser: argparse.ArgumentParser, *names: str, dest: str, **kwargs: Any
                 ) -> argparse.Action:
    """An old spelling of a flag: parsed into ``dest``, not shown in ``--help``."""
    kwargs.setdefault("default", argparse.SUPPRESS)
    return parser.add_argument(*names, dest=dest, help=argparse.SUPPRESS, **kwargs)


def add_precision_argument(parser: argparse.ArgumentParser, amp_alias: bool = True,
                           default: str | None = "auto") -> argparse.Action:
    """``--precision auto|fp32|bf16``; the old ``--amp`` means bf16. Predictors default to
    ``auto`` (bf16 where the CPU has it natively, else fp32; pass ``--precision fp32`` for the
    arithmetic of the committed records); trainers pass ``default=None``: the config's
    (``auto`` in the quick profiles, the original's fp32 in the paper profiles)."""
    action = parser.add_argument(
        "--precision", choices=PRECISIONS, default=default,
        help="arithmetic: auto = bf16 autocast on a CPU with native bf16 "
             "(avx512_bf16/amx_bf16 flags), else fp32; bf16 = autocast (the old --amp); fp32 "
             "= full precision " +
             ("(default: %(default)s)" if default else "(default: the config's: auto in the "
              "quick profile, fp32 (the original's) in the paper profile)"))
    if amp_alias:
        hidden_alias(parser, "--amp", dest="precision", action="store_const", const="bf16")
    return action


def add_device_argument(parser: argparse.ArgumentParser, default: str = "auto",
                        choices_help: str = "auto, cpu, cuda, cuda:N") -> argparse.Action:
    return parser.add_argument("--device", default=default,
                               help=f"{choices_help}; auto = CUDA when present, else the CPU; "
                                    "a device that is not there is an error "
                                    "(default: %(default)s)")


def add_progress_argument(parser: argparse.ArgumentParser,
                          aliases: Sequence[str] = ("--no_progress",)) -> argparse.Action:
    """``--no-progress`` (and hidden old spellings such as ``--no_progress``, ``--quiet``)."""
    action = parser.add_argument(
        "--no-progress", dest="no_progress", action="store_true",
        help="no progress bars (they are off anyway when the output is not a terminal)")
    for alias in aliases:
        hidden_alias(parser, alias, dest="no_progress", action="store_true")
    return action


def progress_enabled(no_progress: bool = False, streams: Sequence[Any] | None = None) -> bool:
    """Progress bars only for a person watching: off with ``--no-progress``, under CI
    (``CI`` set) and when stdout or stderr is not a terminal (make targets, logs, pipes)."""
    if no_progress or os.environ.get("CI"):
        return False
    for stream in (streams if streams is not None else (sys.stdout, sys.stderr)):
        try:
            if not stream.isatty():
                return False
        except (AttributeError, ValueError):
            return False
    return True


def finish_parser(parser: argparse.ArgumentParser, set_example: str | None = None
                  ) -> argparse.ArgumentParser:
    """The last touch every parser gets: the ``--set`` help shows ``set_example`` (a key of this
    trainer's config, so the example runs), and every shown flag without a default in its help
    text gets ``(default: ...)`` when it has one."""
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        for opt in list(action.option_strings):  # --foo_bar is shown as --foo-bar
            dashed = "--" + opt[2:].replace("_", "-")
            if opt.startswith("--") and dashed != opt and (
                    parser._option_string_actions.get(dashed, action) is action):
                parser._option_string_actions[dashed] = action
                action.option_strings = [dashed if o == opt else o
                                         for o in action.option_strings]
                action.option_strings.append(opt)  # still parsed, hidden below
        if len(action.option_strings) > 1 and not isinstance(
                action, argparse.BooleanOptionalAction):  # old spellings parse, not shown
            action.option_strings = [s for s in action.option_strings
                                     if s.startswith("-") and not s.startswith("--")] + [
                next(s for s in action.option_strings if s.startswith("--"))]
        if "--set" in action.option_strings and set_example:
            action.help = (f"override a config value, e.g. --set {set_example} (repeatable; "
                           "unknown keys are an error)")
        if action.help is None:
            action.help = ""
        default = action.default
        if (action.option_strings and "default" not in action.help
                and default not in (None, False, argparse.SUPPRESS, [], ())
                and not isinstance(action, argparse._HelpAction)):
            action.help = (action.help + " " if action.help else "") + "(default: %(default)s)"
    return parser


def check_keras_device(name: str) -> str:
    """``--device`` of the Keras CLIs: ``auto``, ``cpu`` (GPUs hidden from TensorFlow) or
    ``gpu``/``cuda`` (a ``UserError``, exit code 2, when TensorFlow sees none). Call it before
    the first TensorFlow import for ``cpu``; ``gpu`` imports TensorFlow to look."""
    spec = str(name).strip().lower()
    if spec == "auto":
        return spec
    if spec == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        return spec
    if spec in ("gpu", "cuda") or spec.startswith(("gpu:", "cuda:")):
        from shared.runs import quiet_tensorflow

        quiet_tensorflow()  # TensorFlow's C++ start-up lines would bury the one-line error
        import tensorflow as tf

        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                gpus = tf.config.list_physical_devices("GPU")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if not gpus:
            raise UserError(f"--device {name}: TensorFlow sees no GPU on this machine; use "
                            "--device cpu or auto")
        return spec
    raise UserError(f"--device {name}: not a device (expected auto, cpu or gpu)")


def help_first(main: Any, argv: Sequence[str] | None, *args: Any) -> int | None:
    """``--help`` before any framework import: when ``-h``/``--help`` is asked, call
    ``main(*args, argv)`` (whose parser prints the help and exits) before the caller imports
    its error classes from torch-importing modules. Returns None otherwise."""
    given = sys.argv[1:] if argv is None else list(argv)
    if "-h" in given or "--help" in given:
        return main(*args, argv)
    return None
