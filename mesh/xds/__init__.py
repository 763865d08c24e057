"""mesh.xds: serving config to Envoy — istiod's ``pilot/pkg/xds``.

* ``discovery`` — DiscoveryServer: push requests in, debounced pushes out (``debounce``).
* ``ads`` — the ADS gRPC server (State of the World, and Delta through ``delta``) and the generator map (``default_generators``).
* ``connection`` — one Envoy's stream: watches, versions, nonces, ACK/NACK.
* ``delta`` — Delta xDS (``DeltaAggregatedResources``) on the same server: subscriptions, removals.
* ``cds``, ``eds``, ``lds``, ``rds`` — generators over ``mesh.networking``'s builders (``generator``).
* ``resources`` — type URLs and dict → bytes; ``cache`` — the XdsCache.
* ``fastpath`` — every shortcut that makes thousands of proxies affordable in Python.
* ``debug`` — syncz / adsz / config_dump / proxy-status; ``monitoring`` — Prometheus metrics.
"""
