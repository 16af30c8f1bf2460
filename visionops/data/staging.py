"""Write a folder atomically: build it in a temp dir beside the target, then swap it in."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from visionops.data.errors import DataError


def check_target(out: Path, replaceable: Callable[[Path], bool], what: str) -> None:
    """Refuse a target that is a file, or a non-empty folder that ``replaceable`` does not accept."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DataError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not replaceable(out):
        raise DataError(
            f"output {out} is a non-empty directory that is not a previous {what}; refusing to overwrite"
        )


@contextmanager
def staged_dir(out: str | Path, replaceable: Callable[[Path], bool], what: str) -> Iterator[Path]:
    """Yield a temp dir next to ``out``; on success it replaces ``out``, on error it is removed.

    ``out`` is never half-written: it keeps its old content until the final rename, and a failed run
    also removes the parent folders it created for ``out``. Its parent must be writable and ``out``
    itself must not be a mount point (it is renamed, not emptied).
    """
    out = Path(out).absolute()
    check_target(out, replaceable, what)
    created = [parent for parent in out.parents if not parent.exists()]  # deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        tmp.chmod(0o755)
        yield tmp
        check_target(out, replaceable, what)
        old: Path | None = None
        if out.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            old.rmdir()
            try:
                os.replace(out, old)
            except OSError as exc:  # e.g. out is a mount point
                raise DataError(f"cannot replace {out} (is it a mount point?): {exc}") from exc
        try:
            os.replace(tmp, out)
        except OSError as exc:
            if old is not None:
                os.replace(old, out)  # put the previous content back
            raise DataError(f"cannot move the new {what} into {out}: {exc}") from exc
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed run created for its target, deepest first, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def link_or_copy(src: Path, dst: Path) -> None:
    """Hardlink ``src`` (a symlink: its target) to ``dst`` when the filesystem allows it, else copy the bytes."""
    try:
        os.link(src.resolve(), dst)  # link(2) on Linux would link a symlink itself, not its target
    except OSError:
        shutil.copyfile(src, dst)
