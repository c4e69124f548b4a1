"""Writing output files: whole or not at all, and never over a run's store."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError

# The file in a run folder that holds the run's results: the runner writes it, the loaders refuse to
# read a run folder as data, and exports refuse to overwrite it.
STORE_NAME = "cvkit.sqlite"


@contextlib.contextmanager
def atomic_write(path, mode: str = "w", **options):
    """Open a temporary file beside ``path`` for writing; when the block ends without an error, flush
    it to disk and move it over ``path`` (``os.replace``). On any error (a full disk, a file-size
    limit, an exception in the block) the temporary file is removed and ``path`` keeps its old
    content: a reader sees the old file or the new one, never a part. A symbolic link is written
    through (its target is replaced), as ``open`` would."""
    path = Path(os.path.realpath(path))
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **options) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _mode_for(path))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_bytes(path, data: bytes) -> None:
    with atomic_write(path, "wb") as file:
        file.write(data)


def write_text(path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8", newline="") as file:
        file.write(text)


def _mode_for(path: Path) -> int:
    """The permissions ``open`` would give: the replaced file's, else 0o666 less the umask
    (``mkstemp`` makes its file private)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def check_output_path(path, protected: Iterable[Path], what: str) -> None:
    """Refuse an output ``path`` that is, or links to, one of the ``protected`` files (``what``
    says what they are), so that an export cannot overwrite them."""
    target = Path(path)
    resolved = target.resolve()
    for kept in protected:
        same = resolved == kept.resolve()
        with contextlib.suppress(OSError):  # a hard link: the same file under another name
            same = same or os.path.samefile(target, kept)
        if same:
            raise ConfigError(f"{path} is {what} ({kept.name}); write the output to another path")
