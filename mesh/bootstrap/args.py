"""ServerArgs: what istiod is started with (``PilotArgs``), trimmed to what mesh uses.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/options.go#L52-L66 and the
flags in https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-discovery/app/cmd.go.
Where istiod reads a cluster through ``--kubeconfig`` (or in-cluster config), mesh can also read
one from a trace; where istiod's ports are fixed by the Helm chart, each port here is a field
(0 picks a free one) and everything binds to loopback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mesh.clock import Clock

DEFAULT_PORTS = {"xds": 15010, "secure_xds": 15012, "monitoring": 15014, "webhook": 15017, "debug": 8080}


@dataclass
class ServerArgs:
    trace: str | None = None  # a trace file or built-in trace name: the replayed "cluster"
    kubeconfig: str | None = None  # a live cluster instead of a trace
    mesh_config_file: str | None = None  # istiod: --meshConfig (./etc/istio/config/mesh)
    networks_file: str | None = None  # istiod: --networksConfig (./etc/istio/config/meshNetworks)
    config_dir: str | None = None  # file-based config source (istiod: --configDir)
    registries: tuple[str, ...] = ("Kubernetes",)  # istiod: --registries
    domain_suffix: str | None = None  # istiod: --domain; None = the trace's, else cluster.local
    namespace: str = "istio-system"  # POD_NAMESPACE: where istiod runs and reads its ConfigMaps
    pod_name: str = field(default_factory=lambda: os.environ.get("POD_NAME", ""))  # POD_NAME: istiod's pod
    revision: str = ""  # REVISION: "" or "default" reads ConfigMap `istio`, else `istio-<rev>`
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    cacerts_dir: str | None = None  # plugged-in CA files (istiod: ROOT_CA_DIR, ./etc/cacerts)
    ca_key_type: str = "RSA"  # the self-signed root's key: RSA 2048 (Istio's default) or ECDSA (P-256)
    multi_root_mesh: bool = False  # ISTIO_MULTIROOT_MESH: off in 1.19, so stage 9 does nothing by default
    inject_config_file: str | None = None  # istiod: --injectConfig (the ConfigMap's `config` key as a file)
    inject_values_file: str | None = None  # istiod: --valuesFile (the ConfigMap's `values` key)
    tls_cert_file: str | None = None  # istiod: --tlsCertFile, its own serving certificate
    tls_key_file: str | None = None  # istiod: --tlsKeyFile
    speed: float = 1.0  # replay speed for traces under the real clock (0: all at once)
    # Replay the trace with loopback stand-ins for its cluster addresses (mesh.kube.addresses), for
    # real Envoys in the root network namespace (``mesh proxy``, tests): they must never send to 10.x.
    loopback_addresses: bool = False
    clock: Clock | None = None  # None: a VirtualClock (replay); serve passes a RealClock
