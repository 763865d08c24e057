"""The sidecar-scoping trace on the virtual clock: each step pushes the proxies that depend on it
and skips the others (ProxyNeedsPush), and scoped sidecars get smaller CDS and RDS."""

from __future__ import annotations

import pytest
from tracehelpers import replay_with_recorder


@pytest.fixture(scope="module")
def scoping():
    server, recorder = replay_with_recorder("sidecar-scoping")
    yield {r.push.at: r for r in recorder.records}
    server.close()


def _app(proxy_id: str) -> str:
    pod, ns = proxy_id.rsplit(".", 1)
    return f"{pod.split('-')[0]}.{ns}"


def _pushed(rec) -> set[str]:
    return {_app(p) for p in rec.pushed_to}


def _skipped(rec) -> set[str]:
    return {_app(s.proxy) for s in rec.skipped}


BOOKINFO = {"details.default", "productpage.default", "ratings.default", "reviews.default"}
SHOP = {"cart.shop", "checkout.shop"}


def _outbound_hosts(rec, app: str) -> set[str]:
    [d] = [d for d in rec.deliveries if d.step == "push" and _app(d.proxy) == app]
    return {n.rsplit("|", 1)[1] for n in d.by_type()["CDS"].names if n.startswith("outbound|")}


def test_namespace_wide_sidecar_pushes_only_its_namespace(scoping):
    rec = scoping[10.1]
    assert _pushed(rec) == SHOP and _skipped(rec) == BOOKINFO
    assert _outbound_hosts(rec, "cart.shop") == {"cart.shop.svc.cluster.local", "checkout.shop.svc.cluster.local",
                                                 "istiod.istio-system.svc.cluster.local"}
    assert all("Sidecar/shop/default" in s.reason and s.saved["CDS"] > 0 for s in rec.skipped)


def test_workload_selected_sidecar_pushes_only_its_workload(scoping):
    rec = scoping[20.1]
    assert _pushed(rec) == {"checkout.shop"} and _skipped(rec) == BOOKINFO | {"cart.shop"}
    assert "reviews.default.svc.cluster.local" in _outbound_hosts(rec, "checkout.shop")


def test_virtual_service_pushes_only_proxies_that_import_it(scoping):
    rec = scoping[30.1]
    # checkout's egress names default/reviews.default.svc.cluster.local, which the VirtualService's
    # short host ``reviews`` is (in default); cart imports nothing from default
    assert _pushed(rec) == BOOKINFO | {"checkout.shop"}
    assert _skipped(rec) == {"cart.shop"}


def test_export_to_dot_reaches_the_proxy_that_loses_the_service(scoping):
    rec = scoping[40.1]
    assert "checkout.shop" in _pushed(rec)  # its previous scope held reviews
    assert "reviews.default.svc.cluster.local" not in _outbound_hosts(rec, "checkout.shop")
    assert _skipped(rec) == {"cart.shop"}


def test_scoped_sidecars_get_less(scoping):
    before, after = scoping[7.1], scoping[10.1]
    [cart_connect] = [d for d in before.deliveries if _app(d.proxy) == "cart.shop"]
    [cart_scoped] = [d for d in after.deliveries if _app(d.proxy) == "cart.shop" and d.step == "push"]
    for t in ("CDS", "RDS"):
        assert cart_scoped.by_type()[t].bytes < cart_connect.by_type()[t].bytes
