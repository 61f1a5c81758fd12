"""Boolean flags the docker way, for every kubeless command: ``--flag``, ``--flag=false``.

docker's flags (pflag) let a boolean flag take a value only when it is attached
with ``=``: ``--detach=true``, ``--detach=false``, ``-d=false``, read as Go's
``strconv.ParseBool`` reads it (1, t, T, TRUE, true, True and their false
twins). ``--detach false`` is the bare flag followed by the next argument: a
boolean flag never takes the next word. click's flags refuse an attached
value ("Option '--detach' does not take a value"), which broke the seed's
``docker service create --detach=true ...``.

Every boolean flag of the CLI is declared with ``flag(...)`` (a ``BoolFlag``);
that is the one place this behaviour lives. When a command's parser is built,
a ``BoolFlag`` gives the parser the one thing click's lacks: an attached value
for a boolean flag sets it (``--no-watch=true`` clears ``watch``, as its bare
form does). Any other value is one line, ``Option '--detach' takes true or
false, not 'maybe'.``, and exit status 2, as every bad flag. Nothing else about
parsing changes: a positional word stays positional, ``--`` still ends options.
"""

from __future__ import annotations

from typing import Any, Callable

import click
from click import parser as click_parser

TRUE_WORDS = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE_WORDS = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# click >= 8.2 names its parser _OptionParser; 8.1 OptionParser.
_ClickParser: type[Any] = getattr(click_parser, "_OptionParser", None) or \
    getattr(click_parser, "OptionParser")


def parse_bool(text: str, option: str) -> bool:
    """A boolean flag's attached value, as docker reads it."""
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise click.BadOptionUsage(option, f"Option {option!r} takes true or false, not {text!r}.")


class BoolFlag(click.Option):
    """A boolean flag that also accepts ``=true`` / ``=false`` attached to it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("is_flag", True)
        kwargs.setdefault("flag_value", True)  # click 8.1 made it `not default`
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        if type(parser) is _ClickParser:
            parser.__class__ = _Parser  # same state, one method more: see _Parser


class _Parser(_ClickParser):  # type: ignore[misc]
    """click's parser, reading a value attached to a BoolFlag instead of refusing it.

    click splits ``--detach=true`` (and ``-d=true``) into the option and the
    attached value, then matches the option as a long one; only that step
    changes, and only for a BoolFlag with a value attached."""

    def _match_long_opt(self, opt: str, explicit_value: str | None, state: Any) -> None:
        option = self._long_opt.get(opt) or self._short_opt.get(opt)
        if explicit_value is None or option is None or not isinstance(option.obj, BoolFlag):
            super()._match_long_opt(opt, explicit_value, state)
            return
        on = parse_bool(explicit_value, opt)
        state.opts[option.dest] = on != (opt in option.obj.secondary_opts)  # --no-x=true: off
        state.order.append(option.obj)


def flag(*decls: str, **kwargs: Any) -> Callable[[Any], Any]:
    """``click.option`` for a boolean flag: ``flag("-d", "--detach", help=...)``."""
    return click.option(*decls, cls=BoolFlag, **kwargs)
