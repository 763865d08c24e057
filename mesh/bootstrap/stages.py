"""The 16 stages of istiod's ``NewServer``, as data: the spine of the code and of the course.

``NewServer`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L208-L383)
is one long function that calls these in order. ``Server.stages()``, the overview notebook and
``python -m mesh diagrams`` are all generated from this table, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh import ISTIO_SOURCE


@dataclass(frozen=True)
class Stage:
    number: int
    name: str  # the Python method on Server
    go_name: str  # the Go function NewServer calls
    call_line: int  # where NewServer calls it, in server.go at 1.19.0
    go_path: str  # where the Go function is defined
    go_lines: tuple[int, int]  # its first and last line
    summary: str  # one line, our words
    notebook: str
    issue: int  # the mesh issue that implements it

    @property
    def go_url(self) -> str:
        start, end = self.go_lines
        return f"{ISTIO_SOURCE}/{self.go_path}#L{start}-L{end}"

    @property
    def call_url(self) -> str:
        return f"{ISTIO_SOURCE}/pilot/pkg/bootstrap/server.go#L{self.call_line}"


_BOOT = "pilot/pkg/bootstrap"

STAGES: tuple[Stage, ...] = (
    Stage(1, "init_kube_client", "initKubeClient", 256, f"{_BOOT}/server.go", (510, 555),
          "create the Kubernetes client, only if a cluster is a config or service source",
          "01-init-kube-client.ipynb", 2),
    Stage(2, "init_mesh_configuration", "initMeshConfiguration", 260, f"{_BOOT}/mesh.go", (47, 97),
          "load MeshConfig from a file or the istio ConfigMap, over Istio's defaults, and watch it",
          "02-init-mesh-configuration.ipynb", 2),
    Stage(3, "init_mesh_networks", "initMeshNetworks", 263, f"{_BOOT}/mesh.go", (101, 118),
          "load MeshNetworks (which endpoints are in which network) and watch it",
          "03-init-mesh-networks.ipynb", 2),
    Stage(4, "init_mesh_handlers", "initMeshHandlers", 264, f"{_BOOT}/server.go", (1204, 1215),
          "on a mesh config change: reset the trust domain and request a full push",
          "04-init-mesh-handlers.ipynb", 2),
    Stage(5, "init_networks_manager", "environment.InitNetworksManager", 266, "pilot/pkg/model/context.go",
          (203, 206), "compute the gateways of each network; push when they change",
          "05-init-networks-manager.ipynb", 2),
    Stage(6, "maybe_create_ca", "maybeCreateCA", 284, f"{_BOOT}/server.go", (1136, 1159),
          "create or load the CA that signs workload certificates", "06-maybe-create-ca.ipynb", 6),
    Stage(7, "init_controllers", "initControllers", 288, f"{_BOOT}/server.go", (1105, 1122),
          "start the config controllers (Istio CRDs, Ingress, Gateway API) and the service registries",
          "07-init-controllers.ipynb", 4),
    Stage(8, "init_generators", "XDSServer.InitGenerators", 292, "pilot/pkg/xds/discovery.go", (536, 572),
          "map each xDS type URL to the generator that builds it", "08-init-generators.ipynb", 5),
    Stage(9, "init_workload_trust_bundle", "initWorkloadTrustBundle", 295, f"{_BOOT}/server.go", (1235, 1286),
          "collect the roots workloads must trust", "09-init-workload-trust-bundle.ipynb", 6),
    Stage(10, "init_istiod_certs", "initIstiodCerts", 306, f"{_BOOT}/server.go", (939, 975),
          "get istiod's own serving certificate (DNS names of the istiod Service)",
          "10-init-istiod-certs.ipynb", 6),
    Stage(11, "init_secure_discovery_service", "initSecureDiscoveryService", 311, f"{_BOOT}/server.go",
          (725, 780), "the TLS gRPC server on 15012 for xDS and certificate signing",
          "11-init-secure-discovery-service.ipynb", 6),
    Stage(12, "init_secure_webhook_server", "initSecureWebhookServer", 317, f"{_BOOT}/webhook.go", (45, 66),
          "the HTTPS server on 15017 that webhooks are served from", "12-init-secure-webhook-server.ipynb", 6),
    Stage(13, "init_sidecar_injector", "initSidecarInjector", 318, f"{_BOOT}/sidecarinjector.go", (43, 112),
          "the /inject webhook: add the istio-proxy sidecar to pods", "13-init-sidecar-injector.ipynb", 7),
    Stage(14, "init_config_validation", "initConfigValidation", 326, f"{_BOOT}/validation.go", (25, 53),
          "the /validate webhook: refuse bad Istio config", "14-init-config-validation.ipynb", 4),
    Stage(15, "init_registry_event_handlers", "initRegistryEventHandlers", 332, f"{_BOOT}/server.go",
          (843, 924), "turn service and config changes into push requests",
          "15-init-registry-event-handlers.ipynb", 5),
    Stage(16, "init_discovery_service", "initDiscoveryService", 334, f"{_BOOT}/server.go", (642, 650),
          "register the start func that runs the debounce loop and the push sender (the 15010 listener opens in Start)",
          "16-init-discovery-service.ipynb", 5),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    if name not in BY_NAME:
        raise KeyError(f"no stage named {name!r}; stages are: {', '.join(STAGE_NAMES)}")
    return BY_NAME[name]
