"""Atomic file writes: write to a temporary file in the destination folder, then rename.

A reader never sees a half-written file and an interrupted run never leaves one behind.
Every output and checkpoint of the project goes through one of these functions. Files get the
mode an ordinary ``open()`` would give them (0666 less the user's umask), not ``mkstemp``'s 0600.

A checkpoint made of several files (weights + training state) is written as one unit with
``atomic_files``: every file goes to a temporary name first, then a manifest naming each final
file and its SHA-256 is written atomically (the commit point), then the files are renamed into
place. ``checked_files`` (called before reading the set) completes a commit that a kill
interrupted and verifies the hashes, so a kill at any instant leaves either the previous complete
checkpoint or the new one, never a mix; a set that still does not match is
``CheckpointSetError``, one line naming the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Use it with writers that want a file name (``torch.save``, ``model.save``,
    ``rasterio.open``, ``fig.savefig``). The temporary name keeps the final suffix (or
    ``suffix``) so that writers which pick a format from the extension still work. On an
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + (suffix if suffix is not None else path.suffix),
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise FileNotFoundError(f"writer did not create the temporary file for {path}")
        apply_umask(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike) -> None:
    """Give ``path`` (a file or folder written under a temporary name) the mode ``open()`` or
    ``mkdir()`` would have given it under the user's umask."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~current_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (fsync before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (numpy scalars and arrays allowed)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (provenance of converted checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- checkpoint sets
MANIFEST_SUFFIX = ".manifest.json"


class CheckpointSetError(UserError):
    """The files of a multi-file checkpoint are out of step and cannot be repaired."""


def _manifest_path(folder: Path, group: str) -> Path:
    return folder / f"{group}{MANIFEST_SUFFIX}"


@contextlib.contextmanager
def atomic_files(folder: str | os.PathLike, group: str, names: list[str]
                 ) -> Iterator[dict[str, Path]]:
    """Write the files ``names`` of ``folder`` as one unit (checkpoint ``group``, e.g. "last").

    Yields ``{name: temporary path}``; the caller writes each file to its temporary path. On
    success the manifest ``<group>.manifest.json`` (each name's SHA-256 and temporary name) is
    written atomically, then each file is renamed into place. On an exception nothing changes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmps: dict[str, Path] = {}
    try:
        for name in names:
            final = folder / name
            fd, tmp = tempfile.mkstemp(prefix=f".{group}-set.{name}.", suffix=".tmp" + final.suffix,
                                       dir=folder)
            os.close(fd)
            tmps[name] = Path(tmp)
        yield dict(tmps)
        entries = {}
        for name, tmp in tmps.items():
            if not tmp.exists():
                raise FileNotFoundError(f"writer did not create the temporary file for "
                                        f"{folder / name}")
            apply_umask(tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            entries[name] = {"sha256": file_sha256(tmp), "tmp": tmp.name}
        atomic_write_json(_manifest_path(folder, group), {"group": group, "files": entries})
    except BaseException:
        for tmp in tmps.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
    for name, tmp in tmps.items():
        os.replace(tmp, folder / name)


def checked_files(folder: str | os.PathLike, group: str, names: list[str]) -> bool:
    """Make the checkpoint set ``group`` of ``folder`` whole before it is read.

    Returns False when there is no manifest (a run written before manifests existed, or none
    written yet): the caller reads the files as they are. Completes the renames of a commit
    interrupted after its manifest, removes temporary files of an uncommitted one, and raises
    ``CheckpointSetError`` when a file still does not have the hash its manifest names.
    """
    folder = Path(folder)
    manifest = _manifest_path(folder, group)
    if not manifest.is_file():
        return False
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        assert isinstance(entries, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise CheckpointSetError(f"{manifest}: damaged checkpoint manifest") from None
    missing = [n for n in names if n not in entries]
    if missing:
        raise CheckpointSetError(f"{manifest}: does not name {', '.join(missing)}")
    committed = {e.get("tmp") for e in entries.values()}
    for name, entry in entries.items():
        final, tmp = folder / name, folder / str(entry.get("tmp"))
        if final.is_file() and file_sha256(final) == entry.get("sha256"):
            continue
        if tmp.is_file() and file_sha256(tmp) == entry.get("sha256"):
            os.replace(tmp, final)  # roll the interrupted commit forward
            continue
        raise CheckpointSetError(
            f"{final}: does not match {manifest} (the checkpoint's files are out of step: "
            "the run was killed while writing it or a file was changed); start a new run "
            "or restore the file")
    for stray in folder.glob(f".{group}-set.*"):
        if stray.name not in committed:
            with contextlib.suppress(OSError):
                stray.unlink()
    return True
