"""The ``-l/--selector`` flag of get, describe, delete and apply --prune.

The grammar is kubeless.api.selectors (kubectl's); this module only turns
its refusal into a CLI error, and refuses, for commands that delete what
they select, a selector with no requirement (``-l ' '``), which would
select everything.
"""

from __future__ import annotations

from kubeless.api.selectors import InvalidSelector, Selector, parse_selector
from kubeless_cli.context import CliError

SELECTOR_HELP = ("Label selector: k=v, k!=v, 'k in (a,b)', 'k notin (a,b)', k, !k; "
                 "comma-separated, all must hold.")


def selector_of(text: str | None) -> Selector | None:
    """The parsed ``-l`` value, None when it was not given (or empty)."""
    try:
        return parse_selector(text) if text else None
    except InvalidSelector as err:
        raise CliError(str(err)) from None


def narrowing_selector(text: str) -> Selector:
    """The ``-l`` of a command that deletes what it selects: it must narrow."""
    sel = selector_of(text)
    if not sel:
        raise CliError(f'bad label selector "{text}": it has no requirement, so it would '
                       "select everything")
    return sel
