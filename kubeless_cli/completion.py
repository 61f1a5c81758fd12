"""Shell completion: ``kubeless completion bash|zsh|fish`` and what a TAB offers.

click does the shell side: the script ``completion`` prints calls ``kubeless``
again with ``_KUBELESS_COMPLETE=<shell>_complete`` and the words typed, and
click answers with command names, flags and what the parameters'
``shell_complete`` callbacks return. Those are here: ``kinds`` (``get <TAB>``:
services, nodes, tasks, secrets, configs, routes and their short names) and
``names(kind)`` (``service ps <TAB>``, ``node rm <TAB>``, ``get KIND <TAB>``), read
from the cluster the command line points at: the global ``--endpoints``,
``--prefix``, ``--cacert/--cert/--key`` (or the ``KUBELESS_*`` variables and
``KUBELESS_CERT_PATH``) and ``-n``, as the command itself would (TLS on, as
``up`` starts it).

A TAB never hangs and never prints an error: the read has ``TIMEOUT`` seconds in
all, and any failure (etcd unreachable, a certificate refused, a bad flag) means
no names offered.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem

TIMEOUT = 2.0  # seconds a TAB may wait for etcd in all
SHELLS = ("bash", "zsh", "fish")

Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def complete_kinds(ctx: click.Context, param: click.Parameter,
                   incomplete: str) -> list[CompletionItem]:
    """The kind words ``get`` takes: each kind's plural and short names."""
    from kubeless.api.kinds import load_kinds

    words = [w for k in load_kinds().values() for w in (k.plural, *k.short_names)]
    return [CompletionItem(w) for w in sorted(words) if w.startswith(incomplete.lower())]


def complete_names(kind: str | None = None, suffix: str = "") -> Completer:
    """The names of ``kind``'s resources in the cluster (None: the kind the command's
    ``kind`` argument names, as ``get KIND <TAB>``); ``suffix`` follows each name
    (``service scale web=``)."""
    def complete(ctx: click.Context, param: click.Parameter,
                 incomplete: str) -> list[CompletionItem]:
        wanted = kind or _kind_of(ctx.params.get("kind"))
        if wanted is None:
            return []
        typed = set(ctx.params.get(param.name or "") or ())  # names already on the line
        found = [f"{n}{suffix}" for n in resource_names(ctx, wanted) if n not in typed]
        return [CompletionItem(n, type="plain") for n in found if n.startswith(incomplete)]
    return complete


def _kind_of(word: Any) -> str | None:
    from kubeless.api import UnknownKind, resolve_kind

    if not isinstance(word, str):
        return None
    try:
        return resolve_kind(word).kind
    except UnknownKind:
        return None


def resource_names(ctx: click.Context, kind: str) -> list[str]:
    """The names of ``kind`` in the namespace the command line gives; [] on any failure
    or after TIMEOUT seconds."""
    try:
        return asyncio.run(asyncio.wait_for(_read_names(ctx, kind), TIMEOUT))
    except Exception:  # a TAB shows nothing rather than an error: unreachable, refused...
        return []


async def _read_names(ctx: click.Context, kind: str) -> list[str]:
    from kubeless import store
    from kubeless.api import resolve_kind
    from kubeless_cli.context import Context, checked_namespace

    root = ctx.find_root().params
    cli = Context(endpoints=root["endpoints"], prefix=root["prefix"], timeout=TIMEOUT,
                  cacert=root.get("cacert"), cert=root.get("cert"), key=root.get("key"),
                  cert_path=os.environ.get("KUBELESS_CERT_PATH") or None)
    namespace = None
    if resolve_kind(kind).namespaced:
        given = (ctx.params.get("namespace") or root.get("namespace")
                 or os.environ.get("KUBELESS_NAMESPACE") or "default")
        namespace = checked_namespace(given, "-n")
    rstore = store.connect(cli.endpoints, cli.prefix, retry_for=TIMEOUT / 2, tls=cli.tls())
    try:
        result = await rstore.list(kind, namespace)
        return sorted(item["metadata"]["name"] for item in result.items)
    finally:
        await rstore.etcd.close()


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script of a shell: bash, zsh or fish.

    \b
    bash:  source <(kubeless completion bash)      (in ~/.bashrc)
    zsh:   source <(kubeless completion zsh)       (in ~/.zshrc)
    fish:  kubeless completion fish > ~/.config/fish/completions/kubeless.fish
    """
    from click.shell_completion import get_completion_class

    from kubeless_cli.main import cli

    script_class = get_completion_class(shell)
    if script_class is None:  # click knows the three SHELLS
        raise click.UsageError(f"no completion for {shell}")
    click.echo(script_class(cli, {}, "kubeless", "_KUBELESS_COMPLETE").source())
