"""File helpers: atomic writes (a crash or Ctrl-C never leaves a half-written checkpoint or JSON behind), hashes.

Files and folders written here get the permissions a plain ``open()`` or ``mkdir`` would give them:
0o666 (0o777 for a folder) less the umask, or the mode of the file they replace. ``mkstemp`` and
``mkdtemp`` create 0o600 and 0o700, which would hide checkpoints and exports from the rest of a lab
group, or from a web server running as another user.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch


def current_umask() -> int:
    """The process umask. Linux reports it in /proc (thread-safe); elsewhere it is read by setting it
    and putting it back, which is what every POSIX program without /proc does."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_mode(path: Path, folder: bool = False) -> int:
    """The mode ``open(path, "w")`` (or ``mkdir``) would leave: an existing file's own, else the default less
    the umask."""
    with contextlib.suppress(FileNotFoundError):
        return stat.S_IMODE(path.stat().st_mode)
    return (0o777 if folder else 0o666) & ~current_umask()


def staging_folder(beside: Path) -> Path:
    """A new, empty hidden folder next to ``beside`` (same file system: renames out of it are atomic), with
    the permissions of a plain ``mkdir``, so that it can itself be renamed into place."""
    beside.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{beside.name}.", dir=beside.parent))
    os.chmod(folder, plain_mode(beside, folder=True) if beside.is_dir() else 0o777 & ~current_umask())
    return folder


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` (atomic on POSIX).

    The temporary file already has the mode ``path`` will keep (see :func:`plain_mode`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, plain_mode(path))
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_bytes_durably(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and on disk before returning: the file and then its folder are
    fsynced, so a power cut right after cannot lose it (a database row that names it may follow)."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself
    finally:
        os.close(folder)
    return path


def write_json(path: str | Path, data: object) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def write_csv(path: str | Path, fieldnames: list[str], rows: list[dict]) -> Path:
    """``rows`` under a header of ``fieldnames``, atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write)


def save_torch(path: str | Path, obj: object) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
