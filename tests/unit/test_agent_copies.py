"""What a task still waits for, given its node's copies and the agent's key; opening them."""

from __future__ import annotations

import base64

import pytest

from kubeless.api.file_refs import FileRef, file_refs
from kubeless.cluster.sealing import copy_context, key_id, new_private_key, public_text, seal
from kubeless_agent.copies import (Copy, OpenedFile, open_files, parse_copy, waiting_for,
                                   waiting_message)
from kubeless_agent.errors import CopyUnusable

KEY = new_private_key()
OWN = key_id(public_text(KEY))
OTHER = key_id(public_text(new_private_key()))
VALUE = b"hunter2-do-not-show"

TEMPLATE = {"secrets": [{"source": "dbpass", "target": "dbpass", "mode": 0o400}],
            "configs": [{"source": "webconf", "target": "/etc/web.conf"}]}
REFS = file_refs(TEMPLATE)


def secret(recipient: str = OWN, *, node: str = "n1", name: str = "dbpass",
           sealed_for: str = "n1") -> Copy:
    sealed = seal(public_text(KEY), VALUE, copy_context(sealed_for, "default", name))
    return Copy("Secret", "default", name, "u1", recipient, sealed)


def config(data: str = base64.b64encode(b"listen 80\n").decode()) -> Copy:
    return Copy("Config", "default", "webconf", "u2", data=data)


def copies(*found: Copy) -> dict[tuple[str, str, str], Copy]:
    return {(c.kind, c.namespace, c.name): c for c in found}


@pytest.mark.parametrize("name, present, waiting", [
    ("nothing there yet", [], ["dbpass", "webconf"]),
    ("the secret only", [secret()], ["webconf"]),
    ("both, the secret sealed to this agent", [secret(), config()], []),
    ("the secret sealed to another key (a previous agent's)", [secret(OTHER), config()],
     ["dbpass"]),
    ("another namespace's copy does not count",
     [Copy("Secret", "other", "dbpass", recipient=OWN, sealed="x"), config()], ["dbpass"]),
])
def test_waiting_for(name: str, present: list[Copy], waiting: list[str]) -> None:
    assert [r.source for r in waiting_for(REFS, "default", copies(*present), OWN)] == waiting, name


def test_waiting_message_names_each_once() -> None:
    assert waiting_message(REFS[:1]) == "waiting for secret dbpass"
    assert waiting_message(REFS + REFS) == "waiting for secret dbpass, config webconf"


def test_open_files_gives_each_value() -> None:
    opened = open_files(REFS, "n1", "default", copies(secret(), config()), KEY)
    assert [(f.ref.path, f.value) for f in opened] == [("/run/secrets/dbpass", VALUE),
                                                       ("/etc/web.conf", b"listen 80\n")]
    assert VALUE.decode() not in repr(opened)


@pytest.mark.parametrize("name, found", [
    ("sealed for another node's name", [secret(sealed_for="n2"), config()]),
    ("a damaged seal", [Copy("Secret", "default", "dbpass", recipient=OWN, sealed="AAAA"),
                        config()]),
    ("a config that is not base64", [secret(), config("not base64!")]),
])
def test_a_copy_that_does_not_open_says_which_never_what(name: str, found: list[Copy]) -> None:
    with pytest.raises(CopyUnusable) as err:
        open_files(REFS, "n1", "default", copies(*found), KEY)
    assert ("dbpass" in str(err.value) or "webconf" in str(err.value)) and \
        VALUE.decode() not in str(err.value), name


def test_parse_copy_takes_names_from_the_key_and_refuses_what_is_not_one() -> None:
    value = {"kind": "Secret", "namespace": "evil", "name": "x", "uid": "u1",
             "recipient": OWN, "sealed": "abc"}
    assert parse_copy("Secret", "default", "dbpass", value) == \
        Copy("Secret", "default", "dbpass", "u1", OWN, "abc")
    assert parse_copy("Secret", "default", "dbpass", {"recipient": OWN}) is None
    assert parse_copy("Config", "default", "c", "text") is None
    assert parse_copy("Config", "default", "c", {"data": "eA=="}) == \
        Copy("Config", "default", "c", data="eA==")


def test_an_opened_file_never_shows_its_value() -> None:
    f = OpenedFile(FileRef("Secret", "dbpass", "/run/secrets/dbpass"), VALUE)
    assert VALUE.decode() not in repr(f) and VALUE.decode() not in str(f)
