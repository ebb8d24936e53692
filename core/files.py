"""Writing files so that a crash or a Stop never leaves half of one: write beside, fsync, rename."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: it appears, complete, only when the block ends without error.

    Readers see the old file or the new one, never a part; the folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` through a temporary file in the same folder (``atomic_file``).

    Example:
        >>> import tempfile
        >>> out = atomic_write(Path(tempfile.mkdtemp()) / "sub" / "a.txt", "done")
        >>> out.read_text(), [p.name for p in out.parent.iterdir()]
        ('done', ['a.txt'])
    """
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)
