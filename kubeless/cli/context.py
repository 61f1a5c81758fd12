"""What every command shares: where etcd is, and running async store calls.

``Context`` carries the global options; ``ctx.run(fn)`` opens a store,
runs ``fn(store)`` on an event loop, and closes the channel, so a command
body is one small coroutine. User-facing failures are ``CliError``: one
clear line first, and an exit code; ``main`` prints them without a
traceback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from kubeless.store import ResourceStore

T = TypeVar("T")

DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"
DEFAULT_PREFIX = "/kubeless"


class CliError(click.ClickException):
    """A user-facing failure: printed as ``error: <message>``, exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code

    def show(self, file: object = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@dataclass
class Context:
    endpoints: str = DEFAULT_ENDPOINTS
    prefix: str = DEFAULT_PREFIX
    timeout: float = 5.0  # the whole budget of one etcd call, retries included

    def run(self, fn: Callable[[ResourceStore], Awaitable[T]]) -> T:
        return asyncio.run(self._run(fn))

    async def _run(self, fn: Callable[[ResourceStore], Awaitable[T]]) -> T:
        from kubeless import store

        try:
            rstore = store.connect(self.endpoints, self.prefix, retry_for=self.timeout)
        except store.BadEndpoint as err:
            raise CliError(str(err)) from None
        try:
            return await fn(rstore)
        finally:
            await rstore.etcd.close()


def current_namespace(namespace: str | None) -> str:
    return namespace or os.environ.get("KUBELESS_NAMESPACE") or "default"


pass_context = click.make_pass_decorator(Context)
