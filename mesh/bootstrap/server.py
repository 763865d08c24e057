"""The mini istiod: ``Server`` runs the 16 stages of ``NewServer`` in istiod's order.

Go: ``NewServer`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L208-L383
and ``Start`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L415-L476.

Go's ``NewServer`` runs every stage inside one constructor. Here the constructor does only the
prologue (Environment, DiscoveryServer, the debug routes) and each stage is a method, so a
notebook can stop half-way and look::

    server = Server(ServerArgs(trace="bookinfo"))
    server.run_until("init_mesh_networks")
    server.environment.mesh()["trustDomain"]

Each stage method is a few lines; where the stage is longer, its body lives in a module named
like the Go file that holds it in ``pilot/pkg/bootstrap`` (``mesh.py``, ``istio_ca.py``,
``controllers.py``, ``certcontroller.py``, ``discovery.py``, ``webhook.py``,
``sidecarinjector.py``, ``validation.py``; ``kubeclient.py`` and ``registry_events.py`` for
stages Go keeps in server.go). The table in ``stages.py`` names every stage's Go function and lines; each method's
docstring links the same lines (``tests/test_bootstrap.py`` checks that they agree).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mesh.bootstrap import (
    certcontroller,
    controllers,
    controllers_debug,
    debug_routes,
    discovery,
    istio_ca,
    kubeclient,
    registry_events,
    sidecarinjector,
    validation,
    webhook,
)
from mesh.bootstrap import mesh as bootstrap_mesh  # mesh.go; named apart from the top package
from mesh.bootstrap.args import ServerArgs
from mesh.bootstrap.http import build_debug_app
from mesh.bootstrap.stages import STAGE_NAMES, STAGES, stage
from mesh.clock import VirtualClock
from mesh.kube.client import KubeClient
from mesh.model.environment import Environment
from mesh.model.network import NetworkManager
from mesh.model.push_request import PushRequest, TriggerReason
from mesh.trustbundle import SOURCE_ISTIO_CA
from mesh.util.web import serve_app
from mesh.xds.ads import default_generators
from mesh.xds.discovery import DiscoveryServer
from mesh.xds.fastpath import freeze_what_is_loaded, thaw

log = logging.getLogger("mesh.bootstrap")


class Server:
    """istiod in miniature. Construct, then ``run_until(stage)`` or ``run_all()``, then ``start``."""

    def __init__(self, args: ServerArgs | None = None, kube_client: KubeClient | None = None):
        self.args = args or ServerArgs()
        self.clock = self.args.clock or VirtualClock()
        # NewServer's prologue: the Environment and the DiscoveryServer exist before any stage.
        self.environment = Environment()
        self.xds = DiscoveryServer(self.clock)
        self.kube_client: KubeClient | None = kube_client  # one handed in is kept, as in istiod
        self.trust_domain: str | None = None  # spiffe.SetTrustDomain, from init_mesh_configuration
        self.ca = None  # IstioCA, from maybe_create_ca
        self.namespace_controller = None  # writes the root into every namespace, from maybe_create_ca
        self.controllers: controllers.Controllers | None = None  # config stores and registries, stage 7
        self.xds_generators: dict = {}  # type URL → generator, from init_generators
        self.istiod_cert = None  # IstiodCert, from init_istiod_certs
        self.secure_grpc_server = None  # SecureGrpcServer (15012): add servicers to it before start()
        self.ca_service = None  # CertificateService (IstioCertificateService), on the secure gRPC server
        self.token_reviewer = None  # fn(token, audiences) -> TokenReview status; None: stage 11 picks one
        self.service_account_tokens = None  # ServiceAccountTokens: the replayed cluster's token issuer
        self.webhook_patcher = None  # WebhookCertPatcher, from init_secure_webhook_server
        self.webhook_route_adders: list[Callable[[object], None]] = []  # fn(aiohttp app) for the HTTPS webhook port
        self.injection_webhook = None  # the sidecar injector, from init_sidecar_injector
        self.config_validation = None  # ReplayValidation (replayed clusters), from init_config_validation
        self.ads = None  # the ADS server, from init_discovery_service
        self.completed: list[str] = []
        # The admin/debug mux (initServers / initIstiodAdminServer): path → handler returning JSON.
        self.debug_routes: dict[str, Callable[[dict], object]] = debug_routes.base_routes(self)
        self.http_route_adders: list[Callable[[object], None]] = []  # fn(aiohttp app) for the debug port
        self.readiness: dict[str, Callable[[], bool]] = {}
        # addStartFunc: components started by start() in order, after the stages ran; each is an
        # async fn(server) that may record the port it bound in bound_ports.
        self.start_funcs: list[tuple[str, Callable[[Server], Awaitable[None]]]] = []
        self.stop_funcs: list[Callable[[], Awaitable[None]]] = []
        self.bound_ports: dict[str, int] = {}

    # -- running stages ---------------------------------------------------------------------
    @staticmethod
    def stages() -> list[str]:
        """The 16 stage names in istiod's order."""
        return list(STAGE_NAMES)

    def run_stage(self, name: str) -> None:
        s = stage(name)
        if name in self.completed:
            return
        log.info("stage %2d/16 %s (%s)", s.number, name, s.go_name)
        getattr(self, name)()
        self.completed.append(name)

    def run_until(self, name: str) -> Server:
        """Run every stage up to and including ``name``, in order. Returns self."""
        stage(name)  # fail early on a typo
        for s in STAGES:
            self.run_stage(s.name)
            if s.name == name:
                break
        return self

    def run_all(self) -> Server:
        return self.run_until(STAGE_NAMES[-1])

    # -- stages 1-5: the cluster and the mesh config ---------------------------------------------
    def init_kube_client(self) -> None:
        """Create the Kubernetes client, but only when istiod would need one (``kubeclient``).

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L510-L555.
        istiod builds a client when Kubernetes is a config source (a kubeconfig with no
        ``configSources`` in the mesh config file, or a ``k8s://`` source) or a service registry
        (``--registries`` includes Kubernetes, the default). mesh adds one kind of cluster: a
        trace, replayed on the server's clock.
        """
        kubeclient.init_kube_client(self)

    def init_mesh_configuration(self) -> None:
        """Load MeshConfig: the file if there is one, else the ``istio`` ConfigMap, else defaults.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/mesh.go#L47-L97.
        With a ConfigMap, the watcher is fed by an informer: every edit is merged over Istio's
        defaults again; YAML Istio would refuse is logged and the last good config kept. The
        same ConfigMap's ``meshNetworks`` key feeds the networks watcher (stage 3 then has
        nothing to do). Afterwards the SPIFFE trust domain is set from the mesh config
        (server.go#L261). See ``mesh.bootstrap.mesh``.
        """
        bootstrap_mesh.init_mesh_configuration(self)

    def mesh_configmap_name(self) -> str:
        return bootstrap_mesh.mesh_configmap_name(self.args.revision)

    def init_mesh_networks(self) -> None:
        """Load MeshNetworks from ``--networksConfig``, unless the ConfigMap watcher already does.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/mesh.go#L101-L118.
        A file that cannot be read or parsed is logged and ignored (empty networks), as in istiod.
        """
        bootstrap_mesh.init_mesh_networks(self)

    def init_mesh_handlers(self) -> None:
        """When the mesh config changes: reset the trust domain and ask for a full push.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1204-L1215.
        The push has reason ``global``: a mesh-wide setting may change every proxy's config, so
        no narrower push is safe.
        """
        def on_mesh_change() -> None:
            self.trust_domain = self.environment.mesh()["trustDomain"]
            self.xds.config_update(PushRequest.of(TriggerReason.GLOBAL, start=self.clock.now()))

        self.environment.mesh_watcher.add_mesh_handler(on_mesh_change)

    def init_networks_manager(self) -> None:
        """Create the NetworkManager: gateways per network, a full push when they change.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L203-L206 →
        https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/network.go#L93-L167.
        """
        self.environment.network_manager = NetworkManager(self.environment.networks_watcher,
                                                          self.xds.config_update)

    # -- stages 6-10: the CA, the controllers, the generators, the certificates ------------------
    def maybe_create_ca(self) -> None:
        """Create the CA that signs workload certificates (plugged-in files, or a self-signed root
        kept in ``istio-ca-secret``) and the namespace controller; see ``mesh.bootstrap.istio_ca``.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1136-L1159.
        """
        istio_ca.maybe_create_ca(self)

    def init_controllers(self) -> None:
        """Build the config store (CRDs or files, Gateway API, Ingress) and the service registries.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1105-L1122 →
        initConfigController (configcontroller.go#L61-L133) and initServiceControllers
        (servicecontroller.go#L31-L67); see ``mesh.bootstrap.controllers``. Sets
        ``environment.config_store`` and ``environment.service_discovery`` and adds the
        ``/debug/configz``, ``/debug/registryz`` and ``/debug/endpointz`` routes.
        """
        self.controllers = controllers.init_controllers(self)
        self.environment.config_store = self.controllers.config_store
        self.environment.service_discovery = self.controllers.service_discovery
        self.debug_routes.update(controllers_debug.routes(self.environment))

    def init_generators(self) -> None:
        """The type URL → generator map: which code builds clusters, endpoints, listeners, routes.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L536-L572.
        istiod registers a dozen (SDS, NDS, ECDS, workload types for ambient, gRPC and debug
        generators); mesh implements the four an Envoy sidecar or gateway needs to route HTTP.
        """
        self.xds_generators = default_generators()
        self.debug_routes["/debug/generators"] = lambda q: {
            url: type(gen).__name__ for url, gen in sorted(self.xds_generators.items())}

    def init_workload_trust_bundle(self) -> None:
        """Gather the roots workloads trust: the CA's root plus mesh config ``caCertificates``.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1235-L1286.
        Only with ``ISTIO_MULTIROOT_MESH`` (off by default in 1.19, ``multi_root_mesh`` here);
        otherwise the bundle stays empty and proxies trust the CA root alone. A change of the
        bundle asks for a full push (reason ``global``).
        """
        bundle = self.environment.trust_bundle
        if not self.args.multi_root_mesh:
            log.info("ISTIO_MULTIROOT_MESH is off: no workload trust bundle")
            return
        bundle.on_update(lambda: self.xds.config_update(PushRequest.of(TriggerReason.GLOBAL)))
        bundle.add_mesh_config(self.environment.mesh())
        self.environment.mesh_watcher.add_mesh_handler(lambda: bundle.add_mesh_config(self.environment.mesh()))
        if self.ca is not None:
            bundle.update_source(SOURCE_ISTIO_CA, [self.ca.root_pem])

    def init_istiod_certs(self) -> None:
        """istiod's own serving certificate, for the discovery address and the istiod Service names:
        the ``tls_cert_file``/``tls_key_file`` files, else one the mesh CA signs (``certcontroller``).

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L939-L975.
        """
        certcontroller.init_istiod_certs(self)

    # -- stages 11-16: the servers, the webhooks, the push machinery ----------------------------
    def init_secure_discovery_service(self) -> None:
        """The secure gRPC server (15012): TLS with istiod's cert, client certs verified if given,
        serving the CA's ``IstioCertificateService`` now and ADS once stage 16 adds it. The port is
        bound by ``start`` (``bound_ports["secure_xds"]``); see ``mesh.bootstrap.discovery``.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L725-L780.
        """
        discovery.init_secure_discovery_service(self)

    def init_secure_webhook_server(self) -> None:
        """The HTTPS webhook server (15017) for ``/inject`` and ``/validate``, from the routes in
        ``webhook_route_adders``, and the webhook configurations' ``caBundle`` patched to the CA
        root; see ``mesh.bootstrap.webhook``.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/webhook.go#L45-L66.
        """
        webhook.init_secure_webhook_server(self)

    def init_sidecar_injector(self) -> None:
        """Sidecar injection: the injector config watcher, the ``/inject`` webhook, and on a replayed
        cluster the admission step that sends new pods through it (``mesh.bootstrap.sidecarinjector``).

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/sidecarinjector.go#L43-L112.
        """
        self.injection_webhook = None
        self.injection_webhook = sidecarinjector.init_sidecar_injector(self)

    def init_config_validation(self) -> None:
        """The ``/validate`` webhook kube-apiserver asks before storing Istio config, and on a replayed
        cluster kube-apiserver's validating step (``mesh.bootstrap.validation``).

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/validation.go#L25-L53.
        """
        self.config_validation = validation.init_config_validation(self)

    def init_registry_event_handlers(self) -> None:
        """Turn registry and config changes into push requests (``mesh.bootstrap.registry_events``).

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L843-L924.
        """
        registry_events.init_registry_event_handlers(self)

    def init_discovery_service(self) -> None:
        """The push machinery: the debounce loop and the ADS server Envoys connect to, listening
        when ``start`` runs (``mesh.bootstrap.discovery``).

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L642-L650.
        """
        self.ads = discovery.init_discovery_service(self)

    # -- Server.Start --------------------------------------------------------------------------
    def add_start_func(self, name: str, fn: Callable[[Server], Awaitable[None]]) -> None:
        self.start_funcs.append((name, fn))

    async def start(self, sync_timeout: float = 30.0) -> None:
        """``Server.Start``: serve the debug port, run the start funcs, wait for informer sync.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L415-L476.
        Like istiod, components start first, then the caches must sync before anything that
        serves proxies accepts connections. Ports are recorded in ``bound_ports``.
        """
        runner, port = await serve_app(build_debug_app(self), self.args.host, self.args.ports.get("debug", 8080))
        self.stop_funcs.append(runner.cleanup)
        self.bound_ports["debug"] = port
        log.info("debug HTTP server on %s:%d (/ready, /debug)", self.args.host, port)
        waited = 0.0
        while not self.has_synced():
            if waited >= sync_timeout:
                raise TimeoutError(f"informers did not sync within {sync_timeout}s")
            await asyncio.sleep(0.05)
            waited += 0.05
        for name, fn in self.start_funcs:
            log.info("starting %s", name)
            await fn(self)
        freeze_what_is_loaded()  # mesh/xds/fastpath.py, 8: the synced caches out of the collector's walks

    async def stop(self) -> None:
        """Stop serving, in reverse start order, then close the kube client."""
        for fn in reversed(self.stop_funcs):
            try:
                await fn()
            except Exception:  # keep stopping the rest
                log.exception("error while stopping")
        self.stop_funcs.clear()
        self.close()
        thaw()  # what start froze may now be garbage, cycles included

    # -- readiness and debug ----------------------------------------------------------------------
    def has_synced(self) -> bool:
        """``cachesSynced``: every informer has listed once (no client: trivially true)."""
        return self.kube_client is None or self.kube_client.has_synced()

    def is_ready(self) -> bool:
        return self.has_synced() and all(probe() for probe in self.readiness.values())

    def close(self) -> None:
        self.xds.stop()
        if self.kube_client is not None:
            self.kube_client.close()

