"""GET /api/v1/admin/nodes: every process of the cluster, its heartbeat, components and state.

Read from the node table, so any process of any node answers for the whole cluster.
"""

from __future__ import annotations

import falcon

from messagepusher.http.resources.common import listing
from messagepusher.http.routes import Op, Route
from messagepusher.supervisor.nodes import cluster_counts, cluster_nodes

ADMIN = "admin"


class Nodes:
    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """HTTP worker thread: one read of the node table; a stale row is one not stamped lately."""
        views = cluster_nodes(
            self.runtime.clock.now(), self.runtime.settings.server.node_stale_seconds
        )
        resp.media = {**listing(views, None), "cluster": cluster_counts(views)}


ROUTES = [
    Route(
        "/api/v1/admin/nodes",
        "nodes:Nodes",
        {
            "GET": Op(
                ADMIN,
                "Every node and process: role, heartbeat, components, running or stale",
            ),
        },
        tag="admin",
    ),
]
