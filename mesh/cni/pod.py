"""One pod sandbox: its network namespace, its address, and commands run inside it.

The integration point for everything that runs "in the pod" — the app, Envoy (as uid/gid 1337 so
istio-init's rules leave its traffic alone), ``mesh exec``, the port-forward helper, istio-init's
``iptables-restore`` — is ``PodSandbox.command(argv, uid=, gid=)``: the argv that runs ``argv``
in the pod's network namespace (``ip netns exec``, which also binds ``/etc/netns/<name>/hosts``
over ``/etc/hosts``) as that uid/gid (``setpriv``), and ``spawn``, which starts it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from mesh.cni import hosts
from mesh.cni.ip import ip
from mesh.iptables.apply import apply as apply_iptables
from mesh.iptables.config import parse_args as parse_iptables_args

ETC_NETNS = Path("/etc/netns")


@dataclass
class PodSandbox:
    name: str  # the pod's name
    namespace: str  # the pod's Kubernetes namespace
    ip: str
    netns: str  # the network namespace's name: <run prefix>-<pod>.<namespace>
    veth: str  # the node-side end, on the bridge in the node namespace

    @property
    def key(self) -> str:
        return f"{self.name}.{self.namespace}"

    @property
    def etc(self) -> Path:
        return ETC_NETNS / self.netns

    def command(self, argv: list[str], uid: int | None = None, gid: int | None = None) -> list[str]:
        """``argv`` run inside this pod as ``uid``/``gid`` (None: keep root's); 1337 is the proxy's
        user and group, which istio-iptables' ``--uid-owner``/``--gid-owner 1337`` rules exempt
        from capture (``mesh.agent.netns`` starts Envoy that way)."""
        wrapped = ["ip", "netns", "exec", self.netns]
        if uid is not None or gid is not None:
            wrapped += ["setpriv"]
            if uid is not None:
                wrapped += [f"--reuid={uid}"]
            if gid is not None:
                wrapped += [f"--regid={gid}", "--clear-groups"]
            wrapped += ["--"]
        return wrapped + list(argv)

    def spawn(self, argv: list[str], uid: int | None = None, gid: int | None = None, **popen) -> subprocess.Popen:
        return subprocess.Popen(self.command(argv, uid, gid), **popen)

    def run(self, argv: list[str], uid: int | None = None, gid: int | None = None, **kwargs):
        return subprocess.run(self.command(argv, uid, gid), **kwargs)

    def write_hosts(self, services: list[dict], domain: str = "cluster.local") -> None:
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "hosts").write_text(hosts.hosts_file(services, self.name, self.namespace, self.ip, domain))
        (self.etc / "resolv.conf").write_text(hosts.RESOLV_CONF)

    def istio_init(self, args: list[str]) -> None:
        """Run the pod's ``istio-init`` container: its istio-iptables ``args`` applied here."""
        apply_iptables(parse_iptables_args(args, pod_ip=self.ip), self.netns)

    def addresses(self) -> str:
        return ip("-4", "-br", "addr", netns=self.netns)
