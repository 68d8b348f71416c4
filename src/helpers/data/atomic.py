"""Write outputs so that a failure never leaves half a result or destroys the previous one.

- ``replace_folder(target)``: build a folder beside ``target`` and swap it into place only on success
  (``swap_in`` does the swap for a folder built elsewhere).
- ``write_text_atomic(path, text)``: write a file beside ``path`` and rename it over ``path``.
- ``build_folder(parent, prefix)``: a temporary build folder whose name carries this process's id;
  ``clean_stale(parent)`` removes those of processes that are gone (killed mid-run: SIGKILL, power loss),
  so an interrupted run never leaves litter that the next run keeps.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def umask() -> int:
    """The process umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def replace_folder(target: str | os.PathLike, tag: str = "building") -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; when the block succeeds it becomes ``target``
    (an existing ``target`` is moved aside first and deleted only once the new one is in place). When the
    block raises, the temporary folder is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = build_folder(target.parent, f".{target.name}.{tag}-")
    tmp.chmod(0o777 & ~umask())  # mkdtemp makes it private; an output folder is an ordinary folder
    try:
        yield tmp
        swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_in(built: Path, target: Path) -> None:
    """Put the complete folder ``built`` at ``target``: an existing ``target`` is moved aside first and
    deleted only once ``built`` is in its place."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{built.name.rsplit('-', 1)[-1]}")
        os.replace(target, old)
        os.replace(built, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(built, target)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; an output is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ".<name>.<tag>-<pid>-<random>": what build_folder and swap_in create; <pid> owns it
_OWNED = re.compile(r"^\..+\.[a-z]+-(\d+)-[^-]+$")


def build_folder(parent: str | os.PathLike, prefix: str) -> Path:
    """A new private temporary folder ``<prefix><pid>-<random>`` in ``parent`` (stale ones of dead
    processes in ``parent`` are removed first: ``clean_stale``)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale(parent)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale(parent: str | os.PathLike) -> list[Path]:
    """Remove the build folders (``build_folder``, ``swap_in``'s old copies) in ``parent`` whose owner
    process no longer runs; returns them."""
    removed = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _OWNED.match(entry.name)
        if m and entry.is_dir() and not entry.is_symlink() and not _alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
