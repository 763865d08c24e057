"""Stage 15: registry and config changes become push requests (initRegistryEventHandlers)."""

from collections import Counter

from mesh.bootstrap import Server, ServerArgs


def _server(trace: str) -> Server:
    return Server(ServerArgs(trace=trace)).run_until("init_registry_event_handlers")


def test_canary_config_edits_become_full_config_pushes():
    server = _server("canary")
    server.clock.run()
    config_pushes = [(r.at, sorted(map(str, r.request.configs_updated))) for r in server.xds.requests
                     if r.request.reason["config"]]
    assert config_pushes[0][0] == 10.0
    vs = [at for at, configs in config_pushes if configs == ["VirtualService/default/reviews"]]
    assert vs == [10.0, 20.0, 30.0, 40.0]  # the four weight shifts
    assert all(r.request.full for r in server.xds.requests if r.request.reason["config"])


def test_scale_out_is_incremental_eds_only():
    server = _server("scale-out")
    server.clock.advance_to(6)  # bookinfo is up
    before = len(server.xds.requests)
    server.clock.run()
    later = server.xds.requests[before:]
    assert later, "scaling reviews-v3 must request pushes"
    reasons = Counter(reason for r in later for reason in r.request.reason)
    assert set(reasons) == {"endpoint"}
    assert all(not r.request.full for r in later)
    assert {str(c) for r in later for c in r.request.configs_updated} == {
        "ServiceEntry/default/reviews.default.svc.cluster.local"}


def test_bookinfo_services_appearing_request_full_service_pushes():
    server = _server("bookinfo")
    server.clock.run()
    services = {str(c) for r in server.xds.requests if r.request.reason["service"] for c in r.request.configs_updated}
    assert {s.split("/")[-1] for s in services} >= {
        f"{name}.default.svc.cluster.local" for name in ("productpage", "details", "ratings", "reviews")}


def test_endpoints_known_at_startup_are_not_new_services():
    from mesh.bootstrap import Server, ServerArgs

    server = Server(ServerArgs(trace="scale-out", speed=0)).run_until(
        "init_registry_event_handlers")  # the whole trace applied before stage 15
    assert ("reviews.default.svc.cluster.local", "default") in server.xds.endpoint_index
    server.xds.eds_update("reviews.default.svc.cluster.local", "default",
                          server.environment.service_discovery.endpoints("reviews.default.svc.cluster.local", 9080))
    assert server.xds.requests[-1].request.full is False
