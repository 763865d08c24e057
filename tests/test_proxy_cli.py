"""proxy-status and proxy-config against the running demo (real Envoys on bookinfo), and what they
show when Envoy rejects a config, and when the control plane restarts."""

from __future__ import annotations

import asyncio
import json
import random
import socket

import pytest
from envoy_harness import LoopThread, get, wait_until

from mesh.cli import main
from mesh.demo.runner import BookinfoDemo, DemoOptions
from mesh.xds.types import CLUSTER, ROUTE

pytestmark = pytest.mark.envoy

SUBNET = f"127.10.{random.randint(100, 250)}"  # a /24 of its own, so parallel runs do not collide
REVIEWS = "reviews.default.svc.cluster.local"
BOOKINFO_APPS = {"productpage", "details", "reviews", "ratings"}


@pytest.fixture(scope="module")
def demo():
    lt = LoopThread()
    d = BookinfoDemo(DemoOptions(trace="bookinfo", speed=0, subnet=SUBNET, ports=dict.fromkeys(
        ("xds", "secure_xds", "monitoring", "webhook", "debug"), 0)))
    lt.run(d.start(), timeout=120)
    yield lt, d
    lt.run(d.stop(), timeout=60)
    lt.close()


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def debug_port(d: BookinfoDemo) -> str:
    return str(d.server.bound_ports["debug"])


def parse_table(text: str) -> list[dict]:
    """Rows of a table whose cells are separated by 3+ spaces (no cell here contains such a run)."""
    import re

    lines = text.strip().splitlines()
    header = re.split(r"\s{3,}", lines[0])
    return [dict(zip(header, re.split(r"\s{3,}", line), strict=False)) for line in lines[1:]]


def test_proxy_status_lists_every_bookinfo_proxy_synced(demo, capsys):
    _lt, d = demo
    code, out, _ = cli(capsys, "proxy-status", "--debug-port", debug_port(d))
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION"]
    rows = parse_table(out)
    assert {r["NAME"] for r in rows} == set(d.pods)  # every pod's sidecar, nothing else
    assert {d.pods[r["NAME"]].app.app for r in rows} == BOOKINFO_APPS
    for r in rows:
        assert (r["CDS"], r["LDS"], r["EDS"], r["RDS"], r["ECDS"]) == ("SYNCED",) * 4 + ("NOT SENT",), r
    # One proxy, as JSON, through --server.
    pp = d.pod("productpage").proxy_id
    code, out, _ = cli(capsys, "proxy-status", pp, "--server", f"http://127.0.0.1:{debug_port(d)}", "-o", "json")
    assert code == 0 and [r["NAME"] for r in json.loads(out)] == [pp]


def test_proxy_config_shows_the_reviews_cluster_and_its_endpoints(demo, capsys):
    _lt, d = demo
    pp = d.pod("productpage").proxy_id
    code, out, _ = cli(capsys, "proxy-config", "clusters", pp, "--debug-port", debug_port(d))
    assert code == 0
    rows = parse_table(out)
    assert {"SERVICE FQDN": REVIEWS, "PORT": "9080", "SUBSET": "-", "DIRECTION": "outbound", "TYPE": "EDS"}.items() \
        <= next(r for r in rows if r["SERVICE FQDN"] == REVIEWS).items()
    code, out, _ = cli(capsys, "proxy-config", "clusters", pp, "--debug-port", debug_port(d), "-o", "json",
                       "--fqdn", REVIEWS)
    assert code == 0 and [c["name"] for c in json.loads(out)] == [f"outbound|9080||{REVIEWS}"]
    # The endpoints of that cluster are the reviews pods' IPs.
    code, out, _ = cli(capsys, "proxy-config", "endpoints", pp, "--debug-port", debug_port(d),
                       "--cluster", f"outbound|9080||{REVIEWS}")
    reviews_ips = {f"{p.ip}:9080" for p in d.pods.values() if p.app.app == "reviews"}
    assert code == 0 and {r["ENDPOINT"] for r in parse_table(out)} == reviews_ips
    # Listeners: the outbound HTTP proxy on the pod IP uses RDS route http_proxy, whose virtual
    # host for reviews routes to that cluster.
    code, out, _ = cli(capsys, "proxy-config", "listeners", pp, "--debug-port", debug_port(d))
    ip = d.pod("productpage").ip
    assert code == 0 and {"ADDRESSES": ip, "PORT": "15080", "MATCH": "ALL", "DESTINATION": "Route: http_proxy"} \
        in parse_table(out)
    code, out, _ = cli(capsys, "proxy-config", "routes", pp, "--debug-port", debug_port(d))
    vhosts = {r["VHOST NAME"]: r for r in parse_table(out)}
    assert code == 0 and vhosts[f"{REVIEWS}:9080"]["DOMAINS"].startswith("reviews:9080")


def test_unknown_proxy_and_absent_server_are_clear_errors(demo, capsys):
    _lt, d = demo
    code, _, err = cli(capsys, "proxy-config", "clusters", "nobody.default", "--debug-port", debug_port(d))
    assert code == 2 and "nobody.default is not connected" in err
    code, _, err = cli(capsys, "proxy-config", "clusters", "no-namespace", "--debug-port", debug_port(d))
    assert code == 2 and "<pod name>.<namespace>" in err
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        free = str(s.getsockname()[1])
    for argv in (["proxy-status", "--debug-port", free], ["proxy-config", "routes", "a.b", "--debug-port", free]):
        code, out, err = cli(capsys, *argv)
        assert code == 2 and "no mesh server answers" in err and out == "", argv
    code, _, err = cli(capsys, "proxy-status", "--server", "http://10.1.2.3:8080")
    assert code == 2 and "loopback" in err


def virtual_service(spec: dict) -> dict:
    meta = {"name": "reviews", "namespace": "default"}
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": meta, "spec": spec}


def only(subset: str, regex: str | None = None) -> dict:
    route = {"route": [{"destination": {"host": "reviews", "subset": subset}}]}
    if regex:
        route["match"] = [{"uri": {"regex": regex}}]
    return {"hosts": ["reviews"], "http": [route]}


async def write(d: BookinfoDemo, obj: dict) -> None:
    client = d.server.kube_client
    existing = client.get(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])
    (client.update if existing else client.create)(obj)


def test_rejected_config_is_nacked_shown_stale_not_resent_and_a_fix_recovers(demo, capsys):
    lt, d = demo
    ads = d.server.ads
    pp = d.pod("productpage")
    apply_and_sync(lt, d, {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                           "metadata": {"name": "reviews", "namespace": "default"},
                           "spec": {"host": "reviews", "subsets": [{"name": v, "labels": {"version": v}}
                                                                   for v in ("v1", "v2", "v3")]}})
    apply_and_sync(lt, d, virtual_service(only("v1")))
    assert set(_versions(lt, pp, 20)) == {"v1"}
    con = ads.connection(pp.proxy_id)
    good = con.watched[ROUTE].version_acked
    rejects = ads.rejects["RDS"]
    # RE2 programs over Envoy's size limit are refused by Envoy; mesh's validation (like istiod's)
    # only checks the syntax, so this VirtualService is accepted and pushed. Istio's bootstrap
    # raises the limit to 32768 (re2.max_program_size.error_level); this program is 40004.
    big = "^/" + "[a-z]{1000}" * 40 + "$"
    lt.run(write(d, virtual_service(only("v2", big))))
    lt.run(wait_until(lambda: ads.rejects["RDS"] > rejects and con.watched[ROUTE].last_error, timeout=20,
                      what="productpage's Envoy's NACK"))
    assert con.watched[ROUTE].last_error and con.watched[ROUTE].version_acked == good
    code, out, _ = cli(capsys, "proxy-status", pp.proxy_id, "--debug-port", debug_port(d))
    [row] = parse_table(out)
    assert code == 0 and (row["RDS"], row["CDS"], row["LDS"]) == ("STALE", "SYNCED", "SYNCED"), row
    sends = con.sends[ROUTE]
    lt.run(asyncio.sleep(1.0))
    assert con.sends[ROUTE] == sends  # the rejected version is not sent again
    assert set(_versions(lt, pp, 20)) == {"v1"}  # traffic flows on the last good config
    # A fixed config is sent, ACKed and used.
    apply_and_sync(lt, d, virtual_service(only("v3", "^/(item[0-9]+)$")))
    code, out, _ = cli(capsys, "proxy-status", pp.proxy_id, "--debug-port", debug_port(d))
    assert parse_table(out)[0]["RDS"] == "SYNCED" and not con.watched[ROUTE].last_error
    assert set(_versions(lt, pp, 10, "/item7")) == {"v3"}


def apply_and_sync(lt: LoopThread, d: BookinfoDemo, obj: dict) -> None:
    """Write ``obj`` to the cluster, wait for the push it causes and for every sidecar's ACK."""
    before = d.server.ads.push_context.version
    lt.run(write(d, obj))
    lt.run(wait_until(lambda: d.server.ads.push_context.version != before, timeout=20, what="the push"))
    lt.run(wait_until(d.all_synced, timeout=20, what="every sidecar's ACK"))


def _versions(lt, pod, n: int, path: str = "/") -> list[str]:
    async def many():
        return await asyncio.gather(*(get(pod.agent.proxy_address, "reviews:9080", path) for _ in range(n)))

    results = lt.run(many())
    assert all(status == 200 for status, _, _ in results), results
    return [body["version"] for _, body, _ in results]


def test_server_restart_ends_with_every_envoy_resynced(demo, capsys):
    lt, d = demo
    before = {key: d.server.ads.connection(key).number for key in d.pods}
    xds_port = d.server.bound_ports["xds"]
    lt.run(d.restart_server(timeout=60), timeout=90)
    assert d.server.bound_ports["xds"] == xds_port
    assert all(d.server.ads.connection(key).number != n for key, n in before.items())
    code, out, _ = cli(capsys, "proxy-status", "--debug-port", debug_port(d))
    rows = parse_table(out)
    assert code == 0 and {r["NAME"] for r in rows} == set(d.pods)
    assert all(r["CDS"] == r["LDS"] == r["EDS"] == r["RDS"] == "SYNCED" for r in rows), rows
    assert CLUSTER in d.server.ads.connection(d.pod("productpage").proxy_id).watched
    status, body, _ = lt.run(get(d.pod("productpage").agent.proxy_address, "productpage:9080"))
    assert status == 200 and body["calls"]["reviews"]["app"] == "reviews"
