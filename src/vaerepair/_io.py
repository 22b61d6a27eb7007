"""Atomic file writes: a crash mid-write leaves the previous file whole."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "remove_stale_temporaries", "DirectoryLock", "FolderLockedError", "write_failure",
           "naming_the_file"]

LOCK_NAME = ".vaerepair.lock"


class FolderLockedError(RuntimeError):
    """Another live process writes to the folder; the message names it."""


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success flush it to disk and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files :func:`atomic_open` left in ``folder`` when its writer was killed
    (``.NAME.tmp-PID`` whose process is gone); returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


class DirectoryLock:
    """A lock file ``folder/.vaerepair.lock`` holding the owner's pid, so two runs never write one folder.

    Created atomically (``O_CREAT | O_EXCL``). A lock whose process is gone (a
    killed run) is stale and taken over; a lock of this process is shared (a
    nested acquisition does not release it). Use as a context manager.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._owned = False

    def acquire(self) -> DirectoryLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    text = self.path.read_text().strip()
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                pid = int(text) if text.isdigit() else -1
                if pid == os.getpid():
                    return self  # ours already (a nested run in this process)
                if pid > 0 and _alive(pid):
                    raise FolderLockedError(
                        f"{str(self.path.parent)!r} is in use by another vaerepair run (pid {pid}); wait for it, "
                        f"choose another folder, or delete {str(self.path)!r} if that process is not vaerepair"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self._owned = True
            return self
        raise FolderLockedError(f"could not lock {str(self.path.parent)!r}: another process keeps taking the lock")

    def release(self) -> None:
        if self._owned:
            self.path.unlink(missing_ok=True)
            self._owned = False

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_failure(err: BaseException, path: str | os.PathLike[str]) -> str:
    """Why writing ``path`` failed, in words: a full disk (torch reports it as ``file write failed``), a
    read-only or forbidden folder, or the error itself."""
    import errno
    import shutil

    code = getattr(err, "errno", None)
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if code == errno.ENOSPC or ("write failed" in str(err) and free is not None and free < 64 * 2**20):
        return f"no space left on device (writing {str(path)!r}); free some space or choose another folder"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{str(folder)!r} is read-only or not writable ({os.strerror(code)}); choose another folder"
    return f"{type(err).__name__}: {err}"


@contextmanager
def naming_the_file(path: str | os.PathLike[str]) -> Iterator[None]:
    """An ``OSError`` raised inside (a full disk while a picture or a JSON file is written) carries ``path`` as its
    filename, so the message can say which file could not be written and why."""
    try:
        yield
    except OSError as err:
        if err.filename:
            raise
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
