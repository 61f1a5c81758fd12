"""Every option of every kubeless command says what it does in --help (issue 19): the
service flags from kubeless_cli.service_flag_help, the rest where they are declared."""

from __future__ import annotations

import dataclasses

import click

from kubeless_cli import main
from kubeless_cli.service_cmds import create, update
from kubeless_cli.service_flag_help import flag_help
from kubeless_cli.service_flags import UPDATE_ONLY, ServiceFlags


def every_command(cmd: click.Command, ctx: click.Context,
                  path: str = "") -> list[tuple[str, click.Command]]:
    out = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, name
            out += every_command(sub, ctx, f"{path} {name}".strip())
    return out


def test_no_option_of_any_command_lacks_help() -> None:
    ctx = click.Context(main.cli)
    silent = [f"kubeless {path} {p.opts[0]}".replace("  ", " ")
              for path, cmd in every_command(main.cli, ctx) for p in cmd.params
              if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert silent == []


def test_every_service_flag_has_a_line_and_a_metavar_in_create_and_update() -> None:
    for field in dataclasses.fields(ServiceFlags):
        if field.name in ("command", "namespace"):  # an argument, and the common -n
            continue
        for update_ in (True,) if field.name in UPDATE_ONLY else (False, True):
            metavar, text = flag_help(field.name, update_)
            assert text.strip() and "\n" not in text, (field.name, update_)
            assert metavar or field.type in ("bool", "bool | None"), (field.name, update_)
    assert "Publish a port" in create.get_help(click.Context(create, info_name="create"))
    assert "Add or update a published port" in \
        update.get_help(click.Context(update, info_name="update"))
