"""A pod's ``/etc/hosts``: what cluster DNS would answer for Service names.

CoreDNS answers ``<svc>.<ns>.svc.<domain>`` with the ClusterIP, and the pod's ``resolv.conf``
search list (``<ns>.svc.<domain> svc.<domain> <domain>``, kubelet's
``generateSearchesForDNSClusterFirst`` in
https://github.com/kubernetes/kubernetes/blob/v1.28.0/pkg/kubelet/network/dns/dns.go)
makes ``<svc>``, ``<svc>.<ns>`` and ``<svc>.<ns>.svc`` work too. mesh runs no DNS server: the same
names are written to the pod's hosts file, which ``ip netns exec`` binds over ``/etc/hosts``.

Simplifications, named: a bare ``<svc>`` resolves only to the pod's own namespace's Service (as
the first search domain would); headless Services (no ClusterIP) and ExternalName are left out; the
file is rewritten when Services change rather than queried live.
"""

from __future__ import annotations


def service_names(name: str, namespace: str, domain: str = "cluster.local") -> list[str]:
    return [f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{domain}"]


def hosts_file(services: list[dict], pod_name: str, pod_namespace: str, pod_ip: str,
               domain: str = "cluster.local") -> str:
    """The hosts file for one pod; ``services`` are Service objects as the API returns them."""
    lines = ["# written by mesh.cni: cluster DNS answers as a hosts file",
             "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{pod_ip}\t{pod_name}"]
    for svc in sorted(services, key=lambda s: (s["metadata"].get("namespace", ""), s["metadata"]["name"])):
        ip = (svc.get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            continue
        name, ns = svc["metadata"]["name"], svc["metadata"].get("namespace", "default")
        names = ([name] if ns == pod_namespace else []) + service_names(name, ns, domain)
        lines.append(f"{ip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


RESOLV_CONF = ("# written by mesh.cni: no DNS server in a mesh pod; names resolve through /etc/hosts\n"
               "options ndots:1 attempts:1 timeout:1\n")
