"""Probe the command-line interfaces without running them (used by the CLI tests).

``python tests/cli_probe.py TARGET...`` where a target is ``package.module`` (run as
``python -m``) or ``package.module:function`` (an entry point). For each it prints one JSON line:
the parser's ``prog``, its defaults and every shown action (flags, help, default, required),
whether ``--help`` exits 0 with a usage line, and which heavy frameworks the ``--help`` imported.
One process per subproject keeps torch and TensorFlow apart.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import runpy
import sys
import warnings

HEAVY = ("torch", "tensorflow", "keras", "segment_anything")


class _Captured(BaseException):
    pass


def _call(target: str, argv: list[str]) -> None:
    module, _, func = target.partition(":")
    if func:
        getattr(importlib.import_module(module), func)(argv)
    else:
        sys.argv = [module, *argv]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=True)


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def parser_of(target: str) -> argparse.ArgumentParser | None:
    """The first parser the CLI parses with (captured, nothing runs after it)."""
    seen: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_known_args

    def capture(self, args=None, namespace=None):
        seen.append(self)
        raise _Captured

    argparse.ArgumentParser.parse_known_args = capture
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            with contextlib.suppress(_Captured, SystemExit):
                _call(target, ["--help"])
    finally:
        argparse.ArgumentParser.parse_known_args = original
    return seen[0] if seen else None


def describe(parser: argparse.ArgumentParser) -> dict:
    actions = []
    for a in parser._actions:
        if a.help == argparse.SUPPRESS or isinstance(a, argparse._HelpAction):
            continue
        actions.append({"flags": list(a.option_strings), "dest": a.dest, "help": a.help or "",
                        "default": _plain(a.default), "required": bool(a.required),
                        "choices": _plain(list(a.choices)) if a.choices else None,
                        "positional": not a.option_strings,
                        "store_true": isinstance(a, argparse._StoreTrueAction)})
    hidden = sorted(s for a in parser._actions if a.help == argparse.SUPPRESS
                    for s in a.option_strings)
    hidden += sorted(s for s, a in parser._option_string_actions.items()
                     if a.help != argparse.SUPPRESS and s not in a.option_strings)
    return {"prog": parser.prog, "defaults": {k: _plain(v) for k, v in parser._defaults.items()},
            "actions": actions, "hidden": hidden}


def help_run(target: str) -> dict:
    before = {m for m in HEAVY if m in sys.modules}
    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            _call(target, ["--help"])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:  # noqa: BLE001 - reported, not raised
            err.write(f"{type(exc).__name__}: {exc}")
            code = 1
    heavy = sorted({m for m in HEAVY if m in sys.modules} - before)
    return {"help_exit": code, "usage": out.getvalue().lstrip().startswith("usage:"),
            "stderr": err.getvalue()[-600:], "heavy": heavy}


def probe(target: str) -> dict:
    record = {"target": target, **help_run(target)}
    parser = parser_of(target)
    record["parser"] = describe(parser) if parser is not None else None
    return record


def main(targets: list[str]) -> int:
    """Each target in a forked child, so that one CLI's imports never hide another's."""
    import os

    import numpy  # noqa: F401  (shared by every CLI: imported once, before the forks)
    import yaml  # noqa: F401

    for target in targets:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read)
            try:
                text = json.dumps(probe(target))
            except BaseException as exc:  # noqa: BLE001
                text = json.dumps({"target": target, "help_exit": None, "usage": False,
                                   "heavy": [], "stderr": f"{type(exc).__name__}: {exc}",
                                   "parser": None})
            with os.fdopen(write, "w") as fh:
                fh.write(text)
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as fh:
            text = fh.read()
        os.waitpid(pid, 0)
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
