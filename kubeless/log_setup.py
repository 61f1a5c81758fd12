"""How every kubeless process logs: one line per record on stderr, with time,
level and logger name (the agent, the controllers and a node run by init,
join or up look alike, so their lines can be read side by side)."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Set up the root logger (a no-op once logging is set up)."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
