"""controllers.main.assemble: every controller of a process reads one ClusterView."""

from __future__ import annotations

from controllers.main import CONTROLLERS, assemble
from controllers.view import ClusterView
from kubeless import store


async def test_the_controllers_share_one_view() -> None:
    rstore = store.connect("127.0.0.1:1", "/assemble-test")  # never dialled here
    try:
        controllers = assemble(rstore, list(CONTROLLERS))
        assert [c.name for c in controllers] == list(CONTROLLERS)
        views = {id(getattr(c, "view")) for c in controllers}
        assert len(views) == 1
        assert isinstance(getattr(controllers[0], "view"), ClusterView)
    finally:
        await rstore.etcd.close()
