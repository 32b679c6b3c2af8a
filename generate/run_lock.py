"""One output folder, one run: an advisory lock on `<output_dir>/generate.lock`.

Two runs on one folder would both pay for every request and append to one journal. The
lock is `flock` on a small file holding the owner's PID: the kernel drops it when the
process ends, however it ends (`kill -9` included), so a crashed run never leaves a folder
locked; the file itself may stay behind, and the next run simply takes it over.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from core.exit_codes import UserError

LOCK_NAME = "generate.lock"


class RunLockError(UserError):
    """Another live process holds the folder; the message names it."""


class RunLock:
    """Held from `acquire` to `release`; `release` removes the file it created or took over."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, output_dir: Path) -> RunLock:
        """Take the folder's lock at once or raise RunLockError naming the process that has it."""
        path = output_dir / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"process {holder}" if holder else "another process"
                raise RunLockError(
                    f"{output_dir} is in use by another generate run ({who}, see {path}); "
                    f"wait for it to finish or stop it, or use another --output_dir"
                ) from None
            except OSError as err:
                os.close(fd)
                raise RunLockError(f"cannot lock {path}: {err.strerror}") from None
            # A run finishing meanwhile removes the file it held: our lock would then be on a
            # file nobody else sees. Only a lock on the file still at `path` counts.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Remove the lock file (while still holding it) and drop the lock."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
