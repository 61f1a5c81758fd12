"""``python -m kubeless_agent``: the same as the ``kubeless-agent`` command."""

from kubeless_agent.main import main

raise SystemExit(main())
