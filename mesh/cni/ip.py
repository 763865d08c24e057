"""The ``ip`` command (iproute2), the only tool mesh uses to change namespaces, links and routes.

Kubernetes' CNI plugins speak netlink directly (github.com/vishvananda/netlink); the commands here
do the same changes and read the same way in a terminal, which is the point for a course.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import shutil
import subprocess

POD_CIDR = "10.244.0.0/16"  # the pods' range (a kind/kubeadm cluster's default)
SERVICE_CIDR = "10.96.0.0/12"  # the Service ClusterIP range (kube-apiserver's default)
# Hosts outside the cluster (mesh.kube.addresses.EXTERNAL_CIDR: ServiceEntry endpoints, VMs; RFC 2544's
# benchmarking range, never routed on the Internet). A VM (``Node.add_vm``) takes one of its addresses.
EXTERNAL_CIDR = "198.18.0.0/15"
CONTAINED = (POD_CIDR, SERVICE_CIDR, EXTERNAL_CIDR)  # never routed from the root namespace: blackholes only


class NetError(RuntimeError):
    """An ``ip`` command failed; the message holds the command and what it printed."""


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def ip_json(*args: str, netns: str | None = None) -> list:
    return json.loads(ip("-j", *args, netns=netns) or "[]")


@functools.cache
def unavailable() -> str | None:
    """Why pods cannot be network namespaces here (None: they can); probed once per process."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    for tool, package in (("ip", "iproute2"), ("iptables-restore", "iptables"), ("setpriv", "util-linux")):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install -y {package})"
    probe = f"mesh{os.getpid()}.999999-probe"  # a run name: a killed probe is cleaned as stale
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def netns_names() -> list[str]:
    return [entry["name"] for entry in ip_json("netns", "list")]


def in_contained_range(address: str) -> bool:
    net = ipaddress.ip_network(address, strict=False)
    return net.version == 4 and any(net.subnet_of(ipaddress.ip_network(c)) or
                                     ipaddress.ip_network(c).subnet_of(net) for c in CONTAINED)


def root_exposure() -> list[str]:
    """Addresses and routes of the pod/Service ranges in the root namespace, other than the
    blackhole routes: each one could carry a packet off the machine. Empty is contained."""
    found = []
    for link in ip_json("-4", "addr", "show"):
        for addr in link.get("addr_info", []):
            if in_contained_range(f"{addr['local']}/{addr.get('prefixlen', 32)}"):
                found.append(f"address {addr['local']}/{addr.get('prefixlen')} on {link['ifname']}")
    for route in ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if dst in ("", "default") or dst.startswith("fe80"):
            continue
        if in_contained_range(dst if "/" in dst else dst + "/32") and not (
                route.get("type") == "blackhole" and dst in CONTAINED):
            found.append(f"route {route.get('type', 'unicast')} {dst} table {route.get('table', 'main')}")
    return found
