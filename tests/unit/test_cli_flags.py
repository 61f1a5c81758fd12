"""Boolean flags the docker way (kubeless_cli.flags): ``--flag``, ``--flag=true|false``,
never ``--flag value``; every boolean flag of the CLI is one; a bad value is one line."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import click
import pytest

from kubeless_cli import main
from kubeless_cli.context import Context
from kubeless_cli.flags import BoolFlag
from lab.hollow import ROOT


def command(path: str) -> click.Command:
    """``"service create"`` -> that command, through the CLI's own lookup."""
    cmd: click.Command = main.cli
    ctx = click.Context(main.cli)
    for word in path.split():
        assert isinstance(cmd, click.Group)
        found = cmd.get_command(ctx, word)
        assert found is not None, word
        cmd = found
    return cmd


def parsed(path: str, *args: str) -> dict[str, Any]:
    """The parameters ``kubeless <path> <args>`` would run with (nothing runs)."""
    ctx = command(path).make_context(path.split()[-1], list(args), obj=Context())
    return dict(ctx.params)


SEED = ("--detach=true", "--name", "web", "--replicas", "3", "-p", "8080:80", "nginx:1.25")

# (command, args, the parameters wanted: a subset)
CASES: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "the seed's exact service create": (
        "service create", SEED,
        {"detach": True, "name": "web", "replicas": "3", "publish": ("8080:80",),
         "image": "nginx:1.25", "command": ()}),
    "bare flag": ("service create", ("--detach", "nginx"), {"detach": True, "image": "nginx"}),
    "--detach=false": ("service create", ("--detach=false", "nginx"), {"detach": False}),
    "short -d=false": ("service create", ("-d=false", "nginx"), {"detach": False}),
    "short bare -d": ("service create", ("-d", "nginx"), {"detach": True, "image": "nginx"}),
    "1": ("service create", ("--detach=1", "nginx"), {"detach": True}),
    "0": ("service create", ("--detach=0", "nginx"), {"detach": False}),
    "True": ("service create", ("--detach=True", "nginx"), {"detach": True}),
    "False": ("service create", ("--detach=False", "nginx"), {"detach": False}),
    "TRUE / f (Go's ParseBool)": ("node ls", ("-q=TRUE",), {"quiet": True}),
    "a separate word is never the flag's value": (
        "service create", ("--detach", "false"), {"detach": True, "image": "false"}),
    "after the image, --flag=x belongs to the command": (
        "service create", ("nginx", "sh", "--detach=maybe"),
        {"image": "nginx", "command": ("sh", "--detach=maybe")}),
    "after --, too": (
        "service create", ("--", "nginx", "--detach=false"),
        {"image": "nginx", "command": ("--detach=false",), "detach": False}),
    "the seed's service update": (
        "service update", ("--detach=true", "--image", "nginx:1.26", "web"),
        {"detach": True, "image": "nginx:1.26", "name": "web"}),
    "a generated flag: update --force=true": (
        "service update", ("--force=true", "web"), {"force": True}),
    "update --force=false": ("service update", ("--force=false", "web"), {"force": False}),
    "an option with a value still takes = ": (
        "service create", ("--name=web", "nginx"), {"name": "web"}),
    "--watch=false": ("rollout status", ("--watch=false", "service/web"), {"watch": False}),
    "--no-watch=true clears it": (
        "rollout status", ("--no-watch=true", "service/web"), {"watch": False}),
    "--no-watch=false sets it": (
        "rollout status", ("--no-watch=false", "service/web"), {"watch": True}),
    "apply --dry-run=true --prune=false": (
        "apply", ("-f", "x.yaml", "--dry-run=true", "--prune=false"),
        {"dry_run": "server", "prune": False}),
    "get -A=true": ("get", ("services", "-A=true"), {"all_namespaces": True}),
    "delete --ignore-not-found=1": (
        "delete", ("service", "web", "--ignore-not-found=1"), {"ignore_not_found": True}),
    "docker's one-letter spellings in create": (
        "service create", ("-e", "A=1", "-l", "tier=web", "-u", "app", "-w", "/srv", "nginx"),
        {"env": ("A=1",), "labels": ("tier=web",), "user": "app", "workdir": "/srv"}),
    "and in update, where no --*-add flag has one": (
        "service update", ("-u", "app", "-w", "/srv", "web"), {"user": "app", "workdir": "/srv"}),
    "node rm --force=false": ("node rm", ("--force=false", "n1"), {"force": False}),
    "join-token --rotate=true -q=false": (
        "join-token", ("worker", "--rotate=true", "-q=false"), {"rotate": True, "quiet": False}),
    "logs -f=true": ("logs", ("t1", "-f=true"), {"follow": True}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_boolean_flags(case: str) -> None:
    path, args, wanted = CASES[case]
    params = parsed(path, *args)
    assert {k: params.get(k) for k in wanted} == wanted


BAD: dict[str, tuple[str, tuple[str, ...], str]] = {
    "not a boolean": ("service create", ("--detach=maybe", "nginx"),
                      "Option '--detach' takes true or false, not 'maybe'."),
    "empty": ("service create", ("--detach=", "nginx"),
              "Option '--detach' takes true or false, not ''."),
    "short": ("node ls", ("-q=yes",), "Option '-q' takes true or false, not 'yes'."),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_value_is_one_clear_error(case: str) -> None:
    path, args, message = BAD[case]
    with pytest.raises(click.BadOptionUsage) as err:
        parsed(path, *args)
    assert err.value.format_message() == message


def test_a_bad_value_on_the_command_line_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kubeless_cli.main", "--endpoints", "http://127.0.0.1:9",
         "service", "create", "-d", "--detach=maybe", "--name", "web", "nginx"],
        cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == \
        ["error: Option '--detach' takes true or false, not 'maybe'."]


def _every_command(cmd: click.Command, ctx: click.Context, path: str) -> list[tuple[str, click.Command]]:
    out = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            out += _every_command(sub, ctx, f"{path} {name}".strip())
    return out


def test_every_boolean_flag_of_the_cli_takes_true_or_false() -> None:
    ctx = click.Context(main.cli)
    flags = [(path, p.name) for path, cmd in _every_command(main.cli, ctx, "")
             for p in cmd.params if isinstance(p, click.Option) and p.is_flag
             and not p.hidden and p.name not in ("help", "version")]
    assert len(flags) > 20
    plain = [(path, name) for path, cmd in _every_command(main.cli, ctx, "")
             for p in cmd.params if isinstance(p, click.Option) and p.is_flag
             and not isinstance(p, BoolFlag) and (name := p.name) not in ("help", "version")]
    assert plain == [], "declare boolean flags with kubeless_cli.flags.flag"
