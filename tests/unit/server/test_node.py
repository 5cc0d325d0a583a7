"""The node's wiring decisions (atoll.server.node): the secret the S3 gateway checks
a request's signature with."""

from __future__ import annotations

from atoll.meta.cluster_map import ClusterMap, Credentials
from atoll.server.node import root_secret


def test_only_the_root_access_key_has_a_secret() -> None:
    m = ClusterMap(cluster_id="c", epoch=3, root=Credentials("AKROOT", "root-secret"))
    assert root_secret(m, "AKROOT") == "root-secret"
    assert root_secret(m, "akroot") is None
    assert root_secret(m, "") is None
    assert root_secret(ClusterMap(), "AKROOT") is None  # before the bootstrap
