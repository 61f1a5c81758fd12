"""The ``kubeless`` command: global options, the command tree, and error handling.

Every failure a user can cause ends here as ``error: <one line>`` (details
may follow on later lines) and a non-zero exit, never a traceback: exit 2
(``USAGE``) when the command line cannot be read - click's own usage errors
(an unknown flag or command, a missing argument, a value click's types
refuse) are printed the same way, on one line, instead of click's usage
block - and 1 for every other failure.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from kubeless_cli.context import DEFAULT_ENDPOINTS, DEFAULT_PREFIX, USAGE, CliError, Context

# Command name -> "module:attribute". Modules load only when their command
# runs: `kubeless get` must start fast (grpc alone costs ~90 ms of imports).
COMMANDS = {
    "apply": "kubeless_cli.apply_cmd:apply",
    "diff": "kubeless_cli.apply_cmd:diff",
    "get": "kubeless_cli.read_cmds:get",
    "describe": "kubeless_cli.read_cmds:describe",
    "delete": "kubeless_cli.read_cmds:delete",
    "events": "kubeless_cli.events_cmd:events",
    "service": "kubeless_cli.service_cmds:service",
    "secret": "kubeless_cli.file_cmds:secret",
    "config": "kubeless_cli.file_cmds:config",
    "node": "kubeless_cli.node_cmds:node",
    "logs": "kubeless_cli.logs_cmd:logs",
    "top": "kubeless_cli.top_cmd:top",
    "wait": "kubeless_cli.wait_cmd:wait",
    "exec": "kubeless_cli.exec_cmd:exec_",
    "rollout": "kubeless_cli.rollout_cmds:rollout",
    "route": "kubeless_cli.route_cmds:route",
    "init": "kubeless_cli.cluster_cmds:init",
    "join": "kubeless_cli.cluster_cmds:join",
    "join-token": "kubeless_cli.cluster_cmds:join_token",
    "up": "kubeless_cli.up_cmd:up",
    "certs": "kubeless_cli.certs_cmds:certs",
    "user": "kubeless_cli.user_cmds:user",
    "completion": "kubeless_cli.completion:completion",
    "prometheus": "kubeless_cli.prometheus_cmd:prometheus",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


if TYPE_CHECKING:  # generic in the stubs of recent click only; plain at run time everywhere
    _FloatParam = click.ParamType[float]
else:
    _FloatParam = click.ParamType


class Seconds(_FloatParam):
    """A number of seconds greater than 0 (``--timeout``): not negative, zero, nan or inf."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"{value!r} is not a number of seconds greater than 0, e.g. 5", param, ctx)
        return seconds


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--endpoints", envvar="KUBELESS_ENDPOINTS", default=DEFAULT_ENDPOINTS,
              show_default=True, help="etcd endpoints, comma-separated [env KUBELESS_ENDPOINTS].")
@click.option("--prefix", envvar="KUBELESS_PREFIX", default=DEFAULT_PREFIX, show_default=True,
              help="Key prefix of this cluster in etcd [env KUBELESS_PREFIX].")
@click.option("--timeout", type=Seconds(), default=5.0, show_default=True,
              help="Seconds to wait for etcd before giving up.")
@click.option("--cacert", metavar="FILE",
              help="https:// endpoints: the CA certificate that signed etcd's "
                   "[default: $KUBELESS_CERT_PATH/ca.pem].")
@click.option("--cert", metavar="FILE",
              help="Our client certificate [default: $KUBELESS_CERT_PATH/cert.pem].")
@click.option("--key", metavar="FILE",
              help="Our client certificate's key [default: $KUBELESS_CERT_PATH/key.pem].")
@click.option("-n", "--namespace", metavar="NAMESPACE",
              help="Namespace of every command that takes one; a command's own -n wins "
                   "[env KUBELESS_NAMESPACE, default: default].")
@click.version_option(package_name="kubeless")
@click.pass_context
def cli(click_ctx: click.Context, endpoints: str, prefix: str, timeout: float,
        cacert: str | None, cert: str | None, key: str | None, namespace: str | None) -> None:
    """kubeless: a container orchestrator whose desired state lives in etcd.

    Declare resources with `apply -f`, read them with `get` and `describe`,
    or use the Swarm-like `service` verbs.

    For https:// endpoints, KUBELESS_CERT_PATH=DIR names a directory holding
    ca.pem, cert.pem and key.pem (Docker's DOCKER_CERT_PATH layout); --cacert,
    --cert and --key override its files one by one.
    """
    click_ctx.obj = Context(endpoints=endpoints, prefix=prefix, timeout=timeout, cacert=cacert,
                            cert=cert, key=key, namespace=namespace,
                            cert_path=os.environ.get("KUBELESS_CERT_PATH") or None)


def main() -> None:
    from kubeless.store import StoreError  # (it turns gRPC's own stderr lines off)

    try:
        cli.main(prog_name="kubeless", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except CliError as err:
        err.show()
        sys.exit(err.exit_code)
    except click.UsageError as err:  # click's: unknown flags, missing arguments, bad values
        click.echo(f"error: {usage_line(err)}", err=True)
        sys.exit(USAGE)
    except click.ClickException as err:
        click.echo(f"error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except StoreError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


def usage_line(err: click.UsageError) -> str:
    """click's message on one line, pointing at the command's help when it is known."""
    message = " ".join(err.format_message().split())
    if err.ctx is None:
        return message
    if not message.endswith((".", "?")):
        message += "."
    return f"{message} See '{err.ctx.command_path} --help'."


if __name__ == "__main__":
    main()
