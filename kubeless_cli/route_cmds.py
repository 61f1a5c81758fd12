"""``kubeless route weight`` and what ``get``/``describe`` show of a Route: its live split.

A Route's weights are its spec; what the nodes forward is its document, written
by the endpoints controller (``endpoints/_routes/<ns>/<name>``): the weights it
carries and each backend's healthy endpoints. ``with_live_split`` reads those
documents and puts, per backend, the live share (``kubeless.api.routes.live_split``:
a backend with no healthy endpoint gets 0% and its share goes to the others) into
the Route's ``status`` for display: nothing of it is stored.

``route weight NAME SERVICE=WEIGHT...`` changes only the named backends' weights,
through the one write path (``kubeless.store.services.update_route``, comparing
what it read); an unknown backend or a bad weight is refused with one line,
nothing written.
"""

from __future__ import annotations

import json
from typing import Any

import click

from kubeless_cli import published
from kubeless_cli.completion import complete_names
from kubeless_cli.context import CliError, Context, current_namespace, pass_context

Resource = dict[str, Any]


async def with_live_split(rstore: Any, routes: list[Resource]) -> list[Resource]:
    """The Routes, each with ``status.backends`` (the live split) from its document."""
    from kubeless.api.routes import live_split

    keys = [rstore.keys.route_endpoints(r["metadata"].get("namespace") or "default",
                                        r["metadata"]["name"]) for r in routes]
    found, _ = await rstore.etcd.get_many(keys) if keys else ({}, 0)
    out = []
    for route, key in zip(routes, keys):
        kv = found.get(key)
        out.append({**route, "status": {"backends": live_split(route, _json(kv))}})
    return out


def _json(kv: Any) -> Any:
    if kv is None:
        return None
    try:
        return json.loads(kv.value)
    except ValueError:
        return None


@click.group()
def route() -> None:
    """Steer Routes: weighted splits of one published port between services."""


@route.command()
@click.argument("name", shell_complete=complete_names("Route"))
@click.argument("weights", nargs=-1, required=True)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@pass_context
def weight(ctx: Context, name: str, weights: tuple[str, ...], namespace: str | None) -> None:
    """Set backends' weights: kubeless route weight shop shop-a=50 shop-b=50."""
    from kubeless.api.routes import parse_weights, weights_text

    try:
        wanted = parse_weights(weights)
    except ValueError as err:
        raise CliError(f"{err}; nothing was written") from None
    ns = current_namespace(namespace)

    async def run(rstore: Any) -> tuple[Resource, bool]:
        from kubeless.api import ApiError, validate
        from kubeless.api.routes import with_weights
        from kubeless.store import StoreError
        from kubeless.store.services import update_route

        changed = False

        def change(live: Resource) -> Resource:
            nonlocal changed
            new = validate(with_weights(live, wanted))
            changed = new["spec"] != live.get("spec")
            return new

        try:
            with published.refusals():
                return await update_route(rstore, name, ns, change), changed
        except (ValueError, ApiError, StoreError) as err:
            raise CliError(f"{err}; nothing was written") from None

    stored, changed = ctx.run(run)
    verb = "weighted" if changed else "unchanged"
    click.echo(f"route/{name} {verb}: {weights_text(stored)}")
