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


def write_section(path: str | Path, name: str, body: str, heading: str | None = None) -> Path:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in a Markdown file, atomically.

    Where the markers are missing they are appended, under ``heading`` when one is given; the rest
    of the file is kept as it is. This is how the bench scripts keep their numbers in the docs.

    Example:
        >>> import tempfile
        >>> doc = Path(tempfile.mkdtemp()) / "doc.md"
        >>> _ = doc.write_text("# Title\\n\\n<!-- speed:begin -->\\nold\\n<!-- speed:end -->\\n\\nNotes.\\n")
        >>> write_section(doc, "speed", "new").read_text()
        '# Title\\n\\n<!-- speed:begin -->\\nnew\\n<!-- speed:end -->\\n\\nNotes.\\n'
    """
    path = Path(path)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    section = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + (f"## {heading}\n\n" if heading else "") + section + "\n"
    return atomic_write(path, text.lstrip("\n"))
