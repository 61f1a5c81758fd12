"""A node's files dir: layout, owners and modes in a temporary directory, and where files may go.

Run as root (as the agent with the docker runtime is), writing mounts a real
tmpfs under the test's temporary directory; every test unmounts it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeless.api.file_refs import FileRef, file_refs
from kubeless_agent.copies import OpenedFile
from kubeless_agent.task_files import (NodeFiles, host_path, in_memory, placement,
                                       remove_node_files)

TEMPLATE = {"secrets": [{"source": "dbpass", "uid": "1000", "gid": "2000", "mode": 0o400},
                        {"source": "tls", "target": "/certs/key.pem"}],
            "configs": [{"source": "webconf", "target": "/etc/web.conf", "mode": 0o444}]}
REFS = file_refs(TEMPLATE)
VALUES = [b"hunter2", b"-----BEGIN KEY-----", b"listen 80\n"]


@pytest.fixture
def files(tmp_path: Path) -> Iterator[NodeFiles]:
    yield NodeFiles(tmp_path, "n1", on_disk=os.geteuid() != 0)
    remove_node_files(tmp_path, "n1")


def test_layout_is_the_task_dir_plus_each_path() -> None:
    where = Path("/run/kubeless/n1/t1")
    assert [str(host_path(where, r)) for r in REFS] == [
        "/run/kubeless/n1/t1/run/secrets/dbpass", "/run/kubeless/n1/t1/certs/key.pem",
        "/run/kubeless/n1/t1/etc/web.conf"]
    assert NodeFiles("/run/kubeless", "n1").bind_mounts("t1", REFS[:1]) == \
        [("/run/kubeless/n1/t1/run/secrets/dbpass", "/run/secrets/dbpass")]


@pytest.mark.parametrize("name, mount_error, on_tmpfs, on_disk, place", [
    ("mounted", "", True, False, "tmpfs"),
    ("not root, but the directory is on a tmpfs", "not permitted: not root", True, False,
     "tmpfs"),
    ("not root, on a disk: docker refuses", "not permitted: not root", False, False, "refused"),
    ("not root, on a disk: the process runtime says so", "not permitted: not root", False, True,
     "disk"),
])
def test_placement(name: str, mount_error: str, on_tmpfs: bool, on_disk: bool,
                   place: str) -> None:
    assert placement(mount_error, on_tmpfs, on_disk) == place, name


def test_files_have_their_value_owner_and_mode(files: NodeFiles) -> None:
    files.write("t1", [OpenedFile(r, v) for r, v in zip(REFS, VALUES)])
    task_dir = files.task_dir("t1")
    assert oct(task_dir.stat().st_mode & 0o777) == "0o700"
    found = [host_path(task_dir, r) for r in REFS]
    assert [p.read_bytes() for p in found] == VALUES
    assert [oct(p.stat().st_mode & 0o777) for p in found] == ["0o400", "0o444", "0o444"]
    if os.geteuid() == 0:
        assert [(p.stat().st_uid, p.stat().st_gid) for p in found] == \
            [(1000, 2000), (0, 0), (0, 0)]
        assert os.path.ismount(files.root) and in_memory(files.root)
        assert oct(files.root.stat().st_mode & 0o777) == "0o700"


def test_removal_sweep_and_unmount(files: NodeFiles) -> None:
    one = [OpenedFile(REFS[0], b"x")]
    for tid in ("t1", "t2", "t3"):
        files.write(tid, one)
    files.remove("t1")
    files.sweep({"t2"})  # t3's task is not held any more
    assert sorted(p.name for p in files.root.iterdir()) == ["t2"]
    files.remove_all()
    assert not files.root.exists()


def test_a_second_write_replaces_a_partial_one(files: NodeFiles) -> None:
    files.write("t1", [OpenedFile(REFS[2], b"old")])
    files.write("t1", [OpenedFile(REFS[0], b"new")])
    assert [p.name for p in files.task_dir("t1").rglob("*") if p.is_file()] == ["dbpass"]


def test_two_references_on_one_path_fail_without_the_value(files: NodeFiles) -> None:
    same = FileRef("Config", "other", "/etc/web.conf")
    with pytest.raises(Exception) as err:
        files.write("t1", [OpenedFile(REFS[2], b"secret-a"), OpenedFile(same, b"secret-b")])
    assert "/t1" in str(err.value) and "secret-" not in str(err.value)
    assert not files.task_dir("t1").exists()
