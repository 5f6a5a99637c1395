"""``UserError``: the one base class of every user mistake in the project (issue 25).

A bad file, value, path or checkpoint given by the user is a ``UserError`` (or a subclass:
``shared.configs.ConfigError``, ``shared.images.ImageReadError``, ``shared.rasters.RasterError``,
``shared.atomic.CheckpointSetError`` and each subproject's own error classes), and
``shared.runs.cli_main`` prints it as one line naming the file and what is wrong, with exit code
2; any other exception is a bug and shows its traceback.

This module imports nothing, so an error class can subclass ``UserError`` in any module (the
shared readers below ``shared.runs`` included) without an import circle or a framework import.
"""

from __future__ import annotations


class UserError(ValueError):
    """A user mistake (bad file, value, path or checkpoint): one line, exit code 2."""
