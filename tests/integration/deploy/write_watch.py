"""Run ``ferry`` with an audit hook that reports every write outside the temporary directory.

``python write_watch.py REPORT ferry-args...``: each file opened for writing, directory
made, file removed or renamed, ... outside ``tempfile.gettempdir()`` (and /dev, /proc) is one
line of REPORT. The image runs with a read-only root filesystem and a writable /tmp only
(``docker run --read-only --tmpfs /tmp``, Kubernetes' readOnlyRootFilesystem with an
emptyDir on /tmp), so serving must write nowhere else. Python-level writes only: what a
native library writes by itself is not seen.
"""

from __future__ import annotations

import os
import sys
import tempfile

_ALLOWED = (os.path.realpath(tempfile.gettempdir()), "/dev", "/proc")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_WRITING = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.symlink",
            "os.link", "os.chmod", "os.chown", "os.truncate", "os.utime", "shutil.rmtree",
            "shutil.move", "shutil.copyfile"}
_REPORT = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def _outside(path: object, dir_fd: object = None) -> bool:
    if not isinstance(path, str | bytes | os.PathLike) or dir_fd not in (None, -1):
        return False  # an open descriptor, or a name relative to a directory already allowed
    full = os.path.realpath(os.fsdecode(path))
    return not any(full == root or full.startswith(root + os.sep) for root in _ALLOWED)


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and args:
        path, mode, flags = (*args, None, None)[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writes and _outside(path):
            os.write(_REPORT, f"{event} {path!s} {mode} {flags}\n".encode())
    elif event in _WRITING and args:
        # os.remove, os.rmdir and os.mkdir end with their dir_fd (-1: none).
        dir_fd = args[-1] if event in ("os.remove", "os.rmdir", "os.mkdir") else None
        if _outside(args[0], dir_fd):
            os.write(_REPORT, f"{event} {args[0]!s}\n".encode())


sys.addaudithook(_hook)

if __name__ == "__main__":  # --workers' processes are spawned and import this module again
    from ferry.cli import main

    sys.exit(main(sys.argv[2:]))
