"""What every command shares: where etcd is, and running async store calls.

``Context`` carries the global options; ``ctx.run(fn)`` opens a store,
runs ``fn(store)`` on an event loop, and closes the channel, so a command
body is one small coroutine. User-facing failures are ``CliError``: one
clear line first, and an exit code; ``main`` prints them without a
traceback. Exit codes: ``USAGE`` (2) when the command line or a
``KUBELESS_*`` variable cannot be read (an unknown flag, a missing
argument, a flag value that is not valid), 1 for every other failure.
traceback.

Before a writing command (``WRITING_COMMANDS``) runs, one cheap read checks
that the prefix holds a cluster (its record, or any node); when it holds
neither, a warning says so on stderr, since a mistyped ``--prefix`` or
``KUBELESS_PREFIX`` would otherwise write where no controller looks. The
exit code is unchanged: tests and benchmarks write into fresh prefixes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from kubeless.store import ResourceStore, TlsConfig

T = TypeVar("T")

DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"
DEFAULT_PREFIX = "/kubeless"
USAGE = 2  # the exit code of a command line that cannot be read, as click's

# Commands (words after ``kubeless``) that write desired state into the prefix.
WRITING_COMMANDS = frozenset({
    "apply", "delete",
    "service create", "service update", "service scale", "service rm", "service rollback",
    "rollout undo", "rollout pause", "rollout resume",
    "node update", "node promote", "node demote", "node rm",
    "secret create", "secret rm", "config create", "config rm",
})


class CliError(click.ClickException):
    """A user-facing failure: printed as ``error: <message>``, exits with ``code``
    (``USAGE`` for a bad command line, 1 otherwise)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        # click declares exit_code on the class; each error sets its own.
        self.exit_code = code  # type: ignore[misc]

    def show(self, file: object = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@dataclass
class Context:
    endpoints: str = DEFAULT_ENDPOINTS
    prefix: str = DEFAULT_PREFIX
    timeout: float = 5.0  # the whole budget of one etcd call, retries included
    cacert: str | None = None  # --cacert, --cert, --key: TLS files given one by one
    cert: str | None = None
    key: str | None = None
    cert_path: str | None = None  # KUBELESS_CERT_PATH: ca.pem, cert.pem, key.pem
    namespace: str | None = None  # the global -n (kubeless -n NS COMMAND)

    def tls(self) -> TlsConfig | None:
        """The TLS files for https:// endpoints (``TlsError`` when the directory is not one)."""
        from kubeless.store import TlsConfig

        return TlsConfig.from_options(self.cacert, self.cert, self.key, self.cert_path)

    def run(self, fn: Callable[[ResourceStore], Awaitable[T]]) -> T:
        return asyncio.run(self._run(fn))

    async def _run(self, fn: Callable[[ResourceStore], Awaitable[T]]) -> T:
        from kubeless import store

        try:
            rstore = store.connect(self.endpoints, self.prefix, retry_for=self.timeout,
                                   tls=self.tls())
        except store.BadEndpoint as err:
            raise CliError(str(err), USAGE) from None
        try:
            if _writing():
                await warn_if_no_cluster(rstore, self.endpoints, self.prefix)
            return await fn(rstore)
        finally:
            await rstore.etcd.close()


def _writing() -> bool:
    """Whether the command running now writes (``kubeless service create`` ...)."""
    click_ctx = click.get_current_context(silent=True)
    words: list[str] = []
    while click_ctx is not None and click_ctx.parent is not None:  # the root is the program
        words.insert(0, click_ctx.info_name or "")
        click_ctx = click_ctx.parent
    return " ".join(words) in WRITING_COMMANDS


async def warn_if_no_cluster(rstore: ResourceStore, endpoints: str, prefix: str) -> None:
    """Warn on stderr when the prefix holds no cluster record and no node: one read
    of the record, and only when it is missing a count of node keys (``count_only``).
    An unreachable etcd fails the command here (it could write nothing either);
    any other failed read says nothing, and the command goes on."""
    from kubeless.store import StoreError, Unavailable
    from kubeless.store.etcd import prefix_end

    keys = rstore.keys
    try:
        _, _, records, _ = await rstore.etcd.range(keys.cluster(), count_only=True)
        if records:
            return
        _, _, nodes, _ = await rstore.etcd.range(keys.kind_prefix("Node"),
                                                 prefix_end(keys.kind_prefix("Node")),
                                                 count_only=True)
    except Unavailable:
        raise
    except StoreError:
        return
    if nodes == 0:
        click.echo(f"warning: no cluster at prefix {prefix} in {endpoints}: no cluster record "
                   f"and no nodes (is --prefix or KUBELESS_PREFIX right?)", err=True)


def given_namespace(namespace: str | None) -> str | None:
    """The namespace the command line gives: the command's own ``-n``, else the global one
    (``kubeless -n NS get services``, kubectl's place), else None."""
    if namespace:
        return namespace
    click_ctx = click.get_current_context(silent=True)
    ctx = click_ctx.find_object(Context) if click_ctx is not None else None
    return ctx.namespace if ctx is not None else None


def current_namespace(namespace: str | None) -> str:
    """The namespace a command works in: ``-n`` (the command's, else the global one), else
    ``KUBELESS_NAMESPACE``, else default; a usage error when the one given is not a valid
    namespace."""
    namespace = given_namespace(namespace)
    if namespace:
        return checked_namespace(namespace, "-n")
    from_env = os.environ.get("KUBELESS_NAMESPACE")
    return checked_namespace(from_env, "KUBELESS_NAMESPACE") if from_env else "default"


def checked_namespace(namespace: str, given_by: str) -> str:
    """``namespace`` when it is a valid namespace; else CliError(USAGE) naming ``given_by``."""
    from kubeless.api.names import namespace_error

    error = namespace_error(namespace)
    if error is not None:
        raise CliError(f"invalid {given_by}: {error}", USAGE)
    return namespace


pass_context = click.make_pass_decorator(Context)
