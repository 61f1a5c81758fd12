"""The Linux plumbing of the test cluster: commands, namespaced processes, and purging.

- ``sh`` runs one command (``ip``, ``nsenter``...) and raises with its
  stderr when it fails;
- ``spawn`` starts a process inside a network namespace (``nsenter
  --net=/var/run/netns/<ns> setpriv --pdeathsig KILL``, both exec without
  forking, so the pid is the process's own) that gets SIGKILL when the test
  process dies (PR_SET_PDEATHSIG), in its own session so Ctrl-C reaches only us;
- ``Proc`` names a process by pid AND start time, so a recorded pid that
  the kernel gave to someone else since is never signalled;
- ``purge`` removes everything a run recorded (``Record``): its processes,
  whatever still runs from its temp dir or in its cgroups (containerd shims,
  containers of a killed dockerd), its mounts, namespaces, veths and dirs.
  It works from the record alone, so ``python -m lab cleanup``
  can remove what a SIGKILLed run left behind. Nothing is found by a name
  pattern: only the names, paths and pids the run wrote down.

The cluster's shape and its operations live in ``harness``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REGISTRY = Path(os.environ.get("KUBELESS_CLUSTER_REGISTRY", "/run/kubeless-test-clusters"))
CGROUP_ROOT = Path("/sys/fs/cgroup")


class SetupError(RuntimeError):
    """The machine cannot host the cluster (no root, no netns, no dockerd...)."""


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.strip()}")
    return res.stdout


def spawn(netns: str, cmd: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in ``netns``; it dies with this process (see the module docstring).

    ``setpriv --pdeathsig KILL`` sets PR_SET_PDEATHSIG and execs, as ``nsenter``
    does, so the pid is the command's own. (A Python ``preexec_fn`` would run
    after fork in a process whose gRPC threads may hold locks: a child could
    hang before it ever execs.)"""
    if threading.current_thread() is not threading.main_thread():
        # PDEATHSIG fires when the forking THREAD ends: a worker thread would kill it early.
        raise RuntimeError("spawn from the main thread only")
    with open(log_path, "ab") as log:
        return subprocess.Popen(["nsenter", f"--net=/var/run/netns/{netns}",
                                 "setpriv", "--pdeathsig", "KILL", "--", *cmd],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class Proc:
    pid: int
    started: int
    what: str = ""

    @classmethod
    def of(cls, pid: int, what: str = "") -> Proc:
        return cls(pid, start_time(pid) or 0, what)

    def alive(self) -> bool:
        return self.started != 0 and start_time(self.pid) == self.started

    def signal(self, sig: int) -> bool:
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
            return True
        return False


@dataclass
class Record:
    """What one run made, written to REGISTRY/<name>.json as it goes."""

    name: str
    owner: Proc
    root: str  # the run's temp dir: data roots, exec roots, sockets, logs
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # interfaces in the root namespace
    cgroups: list[str] = field(default_factory=list)  # dockerd --cgroup-parent values
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return REGISTRY / f"{self.name}.json"

    def save(self) -> None:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> Record:
        raw = json.loads(path.read_text())
        raw["owner"] = Proc(**raw["owner"])
        raw["procs"] = {k: Proc(**v) for k, v in raw.get("procs", {}).items()}
        return cls(**raw)


def records() -> list[Record]:
    if not REGISTRY.is_dir():
        return []
    found = []
    for path in sorted(REGISTRY.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            found.append(Record.load(path))
    return found


def purge_stale(log: Iterable[str] | None = None) -> list[str]:
    """Purge every recorded run whose owner process is gone; their names."""
    gone = [r for r in records() if not r.owner.alive()]
    for r in gone:
        purge(r)
    return [r.name for r in gone]


# -- purging ----------------------------------------------------------------------

def purge(record: Record) -> None:
    """Remove everything ``record`` names (see the module docstring); idempotent."""
    for proc in record.procs.values():
        proc.signal(signal.SIGKILL)
    _kill_until_gone(lambda: _pids_of_run(record))
    for cg in record.cgroups:
        _remove_cgroup(cg)
    _unmount_under(Path(record.root))
    for ns in record.netns:
        sh("ip", "netns", "delete", ns, check=False)
    for link in record.links:
        if Path(f"/sys/class/net/{link}").exists():
            sh("ip", "link", "delete", link, check=False)
    shutil.rmtree(record.root, ignore_errors=True)
    with contextlib.suppress(OSError):
        record.path.unlink()


def _pids_of_run(record: Record) -> set[int]:
    """Processes that belong to the run: in its cgroups, or running from its temp dir
    (dockerd, containerd and the shims all carry its paths in their command lines)."""
    pids: set[int] = set()
    for cg in record.cgroups:
        pids |= _cgroup_pids(cg)
    root = record.root.encode()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        with contextlib.suppress(OSError):
            if root in (entry / "cmdline").read_bytes():
                pids.add(int(entry.name))
    return pids


def _kill_until_gone(find: object, timeout: float = 10.0) -> None:
    assert callable(find)
    deadline = time.monotonic() + timeout
    while True:
        pids = find()
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _cgroup_dirs(parent: str) -> list[Path]:
    rel = parent.strip("/")
    if not rel:
        return []
    dirs = [CGROUP_ROOT / rel] if (CGROUP_ROOT / "cgroup.controllers").exists() else \
        [h / rel for h in CGROUP_ROOT.iterdir() if h.is_dir() and not h.is_symlink()]
    return [d for d in dirs if d.is_dir()]


def _cgroup_pids(parent: str) -> set[int]:
    pids: set[int] = set()
    for top in _cgroup_dirs(parent):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in procs.read_text().split())
    return pids


def _remove_cgroup(parent: str) -> None:
    for top in _cgroup_dirs(parent):
        subdirs = sorted((p for p in top.rglob("*") if p.is_dir()),
                         key=lambda p: len(p.parts), reverse=True)
        for d in [*subdirs, top]:
            with contextlib.suppress(OSError):
                d.rmdir()


def _unmount_under(root: Path) -> None:
    prefix = str(root).rstrip("/")
    for _ in range(3):
        points = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    points.append(point)
        if not points:
            return
        for point in sorted(set(points), key=len, reverse=True):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
