"""The CLI's words for what the Service write path refuses (kubeless.store.services).

Every command that writes a Service (apply, ``service create|update|scale|
rollback``, ``rollout pause|resume|undo``) writes through
``kubeless.store.services``, which numbers and checks published ports and
retries a guarded write while other writers change the services it read.
What it refuses becomes one ``CliError`` here: the port problems (one line,
or a count and a line each), a reference to a Secret or Config that does not
exist, and "services kept changing", each saying that nothing was written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kubeless.api.errors import MissingReference, PortsRefused
from kubeless.store.errors import KeptChanging

from kubeless_cli.context import CliError


def ports_message(problems: list[str]) -> str:
    """What the user reads when published ports are refused."""
    if len(problems) == 1:
        return f"{problems[0]}; nothing was written"
    return (f"{len(problems)} published port problems; nothing was written\n"
            + "\n".join(problems))


@contextmanager
def refusals(code: int = 1) -> Iterator[None]:
    """Turn the write path's refusals into CliErrors (exit ``code`` for port problems)."""
    try:
        yield
    except PortsRefused as err:
        raise CliError(ports_message(err.problems), code=code) from None
    except MissingReference as err:
        raise CliError(f"{err}; nothing was written", code=code) from None
    except KeptChanging as err:
        raise CliError(f"{err}; nothing was written, try again") from None
