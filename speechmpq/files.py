"""Outputs that are never torn: every file is written beside its target and renamed into place.

A writer killed at any moment (``kill -9``, power cut after the data reached the disk, a full disk)
leaves either the previous file or the complete new one under the final name, never a mix. The
temporary file is ``.NAME.PID.tmp`` in the target's folder (same file system, so the rename is
atomic); one left behind by a killed process is removed by the next write of the same target.
"Killed" is judged by PID on this machine: two hosts or containers (separate PID namespaces)
writing the same target in a shared folder at the same time are not supported.
Folders (model directories, corpus splits) are built in a staging folder and swapped in with one
atomic exchange where the OS has it (Linux ``renameat2(RENAME_EXCHANGE)``).

numpy-free and torch-free: the runtime uses it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(path: Path, suffix: str = ".tmp") -> None:
    """Remove ``.NAME.PID<suffix>`` files or folders beside ``path`` whose process is gone."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    for stale in path.parent.glob(f".{path.name}.*{suffix}"):
        pid = stale.name[len(path.name) + 2: -len(suffix)]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def temporary_name(path: Path, suffix: str = ".tmp") -> Path:
    return Path(path).with_name(f".{Path(path).name}.{os.getpid()}{suffix}")


def _fsync(path: Path, directory: bool = False) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems (and /proc-like ones) refuse fsync; the rename still holds
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is flushed to disk and renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is untouched. Writers that infer a
    format from the file name (matplotlib, numpy) must be given the format explicitly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, directory=True)


def atomic_write(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported.

    Any other failure (a path gone, no permission) raises OSError: the caller must not go on to
    the two-rename fallback then.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first))


def staging_folder(final: str | Path) -> Path:
    """An empty folder beside ``final`` to build a folder output in (see replace_folder)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    restore_folder(final)
    remove_stale_temporaries(final, ".partial")
    staging = temporary_name(final, ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def replace_folder(staging: Path, final: str | Path, sync: bool = True) -> Path:
    """Put the complete folder ``staging`` at ``final``; the previous folder stays whole until then.

    ``sync=False`` skips flushing every file to disk first (a kill is still safe; a power cut may
    lose the new folder's data): for large regenerable outputs such as corpus splits.
    """
    final = Path(final)
    for item in staging.rglob("*") if sync else ():
        if item.is_file():
            _fsync(item)
    if final.exists() and _exchange(staging, final):
        shutil.rmtree(staging)  # now holds the previous folder
    elif final.exists():  # no atomic exchange here: previous folder renamed aside first
        backup = final.with_name(final.name + ".old")
        shutil.rmtree(backup, ignore_errors=True)
        final.rename(backup)
        try:
            staging.rename(final)  # a kill between the two renames is undone by restore_folder
        except OSError:
            backup.rename(final)
            raise
        shutil.rmtree(backup)
    else:
        staging.rename(final)
    _fsync(final.parent, directory=True)
    return final


def restore_folder(final: str | Path) -> None:
    """Undo a replace_folder cut between its two renames (systems without an atomic exchange)."""
    final = Path(final)
    backup = final.with_name(final.name + ".old")
    if not final.exists() and backup.is_dir():
        backup.rename(final)
