"""Write outputs so that a failure never leaves half a result or destroys the previous one.

- ``replace_folder(target)``: build a folder beside ``target`` and swap it into place only on success.
- ``write_text_atomic(path, text)``: write a file beside ``path`` and rename it over ``path``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replace_folder(target: str | os.PathLike, tag: str = "building") -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; when the block succeeds it becomes ``target``
    (an existing ``target`` is moved aside first and deleted only once the new one is in place). When the
    block raises, the temporary folder is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; an output folder is an ordinary folder
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
