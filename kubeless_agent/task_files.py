"""Where a node keeps its tasks' secrets and configs as files: a tmpfs, never the disk.

Layout (one rule, read by every runtime):

    <files-dir>/<node-id>/                        a tmpfs (mode 0700, nosuid, nodev,
                                                  noexec, 64 MiB), mounted at first use
    <files-dir>/<node-id>/<task-id>/              one directory per task (0700)
    <files-dir>/<node-id>/<task-id>/<path>        one file per reference: its path in the
                                                  task without the leading ``/``, owned by
                                                  the reference's uid/gid, with its mode

``--files-dir`` is ``/run/kubeless`` by default. The docker runtime bind-mounts
each file read-only at its path; the process runtime gives its process the
task's directory as ``KUBELESS_FILES``.

When no tmpfs can be mounted there (the agent is not root) and the directory
is not on a tmpfs already (``statfs``), ``NodeFiles`` refuses to write unless
it was made with ``on_disk=True``: the docker runtime's tasks are then
rejected with the reason; the process runtime's files go to the 0700 directory
on whatever disk holds it, said once in the log.

``NoFiles`` is what a runtime without files has (fake): nothing written,
nothing to remove. Writes and removals are small blocking calls: callers run
them off the loop (``asyncio.to_thread``). Nothing here ever logs a value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import threading
from collections.abc import Collection, Iterable
from pathlib import Path

from kubeless.api.file_refs import FileRef

from kubeless_agent.copies import OpenedFile
from kubeless_agent.errors import RuntimeFailure

log = logging.getLogger(__name__)

DEFAULT_FILES_DIR = "/run/kubeless"
TMPFS_SIZE = "64m"  # at most 500 KiB a value: room for about a hundred per node
MEMORY_FILESYSTEMS = {0x01021994, 0x858458F6}  # statfs f_type of tmpfs, ramfs
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MNT_DETACH = 2


def host_path(task_dir: Path, ref: FileRef) -> Path:
    """Where a reference's file is on the node, below its task's directory."""
    return task_dir / ref.path.lstrip("/")


class NoFiles:
    """A runtime that writes no files (fake): every call does nothing."""

    def task_dir(self, tid: str) -> Path | None:
        return None

    def write(self, tid: str, files: Iterable[OpenedFile]) -> None:
        return None

    def remove(self, tid: str) -> None:
        return None

    def sweep(self, held: Collection[str]) -> None:
        return None

    def remove_all(self) -> None:
        return None


class NodeFiles(NoFiles):
    """One node's files dir: its tmpfs, one directory per task."""

    def __init__(self, files_dir: str | Path, node_id: str, *, on_disk: bool = False) -> None:
        self.root = Path(files_dir) / node_id
        self.on_disk = on_disk  # may fall back to a 0700 directory on a disk (process runtime)
        self._ready = False
        self._lock = threading.Lock()

    def task_dir(self, tid: str) -> Path:
        return self.root / tid

    def bind_mounts(self, tid: str, refs: Iterable[FileRef]) -> list[tuple[str, str]]:
        """(file on the node, path in the task) of each reference (the docker runtime's)."""
        return [(str(host_path(self.task_dir(tid), ref)), ref.path) for ref in refs]

    def write(self, tid: str, files: Iterable[OpenedFile]) -> None:
        """The task's files, written afresh (RuntimeFailure: where, never what)."""
        self._prepare()
        where = self.task_dir(tid)
        shutil.rmtree(where, ignore_errors=True)  # a previous, interrupted attempt
        try:
            where.mkdir(mode=0o700)
            for f in files:
                _write_file(host_path(where, f.ref), f)
        except OSError as err:
            shutil.rmtree(where, ignore_errors=True)
            raise RuntimeFailure(f"writing the task's secrets and configs under {where}: "
                                 f"{err.strerror or err}") from err

    def remove(self, tid: str) -> None:
        shutil.rmtree(self.task_dir(tid), ignore_errors=True)

    def sweep(self, held: Collection[str]) -> None:
        """Remove the directories of tasks that are not in ``held`` (at agent start)."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry.is_dir() and entry.name not in held:
                log.info("removing the files of task %s (no longer on this node)", entry.name)
                shutil.rmtree(entry, ignore_errors=True)

    def remove_all(self) -> None:
        """Every file of the node, and its tmpfs unmounted (node leave; tests)."""
        with self._lock:
            remove_node_files(self.root.parent, self.root.name)
            self._ready = False

    def _prepare(self) -> None:
        """The node's directory, on a tmpfs (mounted here when needed), once."""
        with self._lock:
            if self._ready and (self.on_disk or in_memory(self.root)):
                return  # (a tmpfs someone unmounted meanwhile is mounted again)
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.root, 0o700)
            reason = "" if os.path.ismount(self.root) and in_memory(self.root) \
                else mount_tmpfs(self.root)
            place = placement(reason, in_memory(self.root), self.on_disk)
            if place == "refused":
                raise RuntimeFailure(
                    f"secrets and configs must not be written to a disk, and no tmpfs "
                    f"could be mounted at {self.root} ({reason}): run the agent as root, "
                    f"or give --files-dir a directory on a tmpfs")
            if place == "disk":
                log.warning("no tmpfs could be mounted at %s (%s): this node's secrets and "
                            "configs are kept in that 0700 directory, ON DISK", self.root, reason)
            self._ready = True


def placement(mount_error: str, on_tmpfs: bool, on_disk: bool) -> str:
    """Where the files go: ``tmpfs`` (mounted, or the directory is on one already),
    ``disk`` (allowed: the process runtime) or ``refused`` (docker)."""
    if not mount_error or on_tmpfs:
        return "tmpfs"
    return "disk" if on_disk else "refused"


def remove_node_files(files_dir: str | Path, node_id: str) -> None:
    """Unmount and remove ``<files_dir>/<node_id>`` (node leave; what tests call to clean up)."""
    root = Path(files_dir) / node_id
    while os.path.ismount(root):  # detach: a container's bind mount of a file keeps its copy
        if _libc().umount2(os.fsencode(root), _MNT_DETACH) != 0:
            log.warning("could not unmount %s: %s", root, os.strerror(ctypes.get_errno()))
            break
    shutil.rmtree(root, ignore_errors=True)


def mount_tmpfs(where: Path) -> str:
    """Mount a private tmpfs at ``where``; "" when done, else why not."""
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    options = f"mode=0700,size={TMPFS_SIZE}".encode()
    if _libc().mount(b"tmpfs", os.fsencode(where), b"tmpfs", flags, options) == 0:
        return ""
    code = ctypes.get_errno()
    return "not permitted: not root" if code == errno.EPERM else os.strerror(code)


def in_memory(path: Path) -> bool:
    """Whether ``path`` is on a tmpfs (or ramfs), by statfs."""
    buf = ctypes.create_string_buffer(256)  # struct statfs: f_type is its first field
    if _libc().statfs(os.fsencode(path), buf) != 0:
        return False
    return ctypes.c_long.from_buffer(buf).value in MEMORY_FILESYSTEMS


def _write_file(path: Path, f: OpenedFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(f.value)
        while view:
            view = view[os.write(fd, view):]
        uid, gid = int(f.ref.uid), int(f.ref.gid)
        if os.geteuid() == 0:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, f.ref.mode & 0o7777)
    finally:
        os.close(fd)


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _LIBC
