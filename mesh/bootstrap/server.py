"""The mini istiod: ``Server`` runs the 16 stages of ``NewServer`` in istiod's order.

Go: ``NewServer`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L208-L383
and ``Start`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L415-L476.

Go's ``NewServer`` runs every stage inside one constructor. Here the constructor does only the
prologue (Environment, DiscoveryServer, the debug routes) and each stage is a method, so a
notebook can stop half-way and look::

    server = Server(ServerArgs(trace="bookinfo"))
    server.run_until("init_mesh_networks")
    server.environment.mesh()["trustDomain"]

A stage that a later issue implements raises ``StageNotImplemented`` naming that issue;
``run_all(skip_unimplemented=True)`` (what ``serve`` does) logs and skips it instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from mesh.bootstrap.args import ServerArgs
from mesh.bootstrap.stages import STAGE_NAMES, STAGES, stage
from mesh.clock import VirtualClock
from mesh.config.mesh import (
    MESH_CONFIGMAP_KEY,
    MESH_CONFIGMAP_NAME,
    NETWORKS_CONFIGMAP_KEY,
    MeshWatcher,
    default_mesh_config,
    read_mesh_config_file,
)
from mesh.config.meshnetworks import MeshNetworksError, NetworksWatcher, parse_mesh_networks
from mesh.kube.addresses import to_loopback
from mesh.kube.client import KubeClient, ReplayClient
from mesh.kube.configmapwatcher import watch_configmap
from mesh.kube.trace import load_trace
from mesh.model.environment import Environment
from mesh.model.network import NetworkManager
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.xds.discovery import DiscoveryServer

log = logging.getLogger("mesh.bootstrap")


class StageNotImplemented(NotImplementedError):
    """A bootstrap stage that mesh does not implement yet."""

    def __init__(self, name: str):
        s = stage(name)
        super().__init__(
            f"stage {s.number} {name} ({s.go_name}) is not implemented yet in mesh: see issue #{s.issue}"
        )
        self.stage = s


class Server:
    """istiod in miniature. Construct, then ``run_until(stage)`` or ``run_all()``, then ``start``."""

    def __init__(self, args: ServerArgs | None = None, kube_client: KubeClient | None = None):
        self.args = args or ServerArgs()
        self.clock = self.args.clock or VirtualClock()
        # NewServer's prologue: the Environment and the DiscoveryServer exist before any stage.
        self.environment = Environment()
        self.xds = DiscoveryServer(self.clock)
        self.kube_client: KubeClient | None = kube_client  # one handed in is kept, as in istiod
        self.trust_domain: str | None = None  # spiffe.SetTrustDomain
        self.ca = None  # IstioCA, from maybe_create_ca
        self.namespace_controller = None
        self.istiod_cert = None  # IstiodCert, from init_istiod_certs
        self.injection_webhook = None  # the sidecar injector, from init_sidecar_injector
        self.xds_generators: dict = {}  # type URL → generator, from init_generators
        self.ads = None  # the ADS server, from init_discovery_service
        self.secure_grpc_server = None  # SecureGrpcServer (15012): add servicers to it before start()
        self.ca_service = None  # CertificateService (IstioCertificateService), on the secure gRPC server
        self.token_reviewer = None  # fn(token, audiences) -> TokenReview status; None: stage 11 picks one
        self.service_account_tokens = None  # ServiceAccountTokens: the replayed cluster's token issuer
        self.webhook_patcher = None  # WebhookCertPatcher, from init_secure_webhook_server
        self.webhook_route_adders: list[Callable[[object], None]] = []  # fn(aiohttp app) for the HTTPS webhook port
        self.completed: list[str] = []
        self.skipped: list[str] = []
        # The admin/debug mux (initServers / initIstiodAdminServer): path → handler returning JSON.
        self.debug_routes: dict[str, Callable[[dict], object]] = {}
        self.http_route_adders: list[Callable[[object], None]] = []  # fn(aiohttp app) for the debug port
        self.readiness: dict[str, Callable[[], bool]] = {}
        # addStartFunc: components started by start() in order, after the stages ran; each is an
        # async fn(server) that may record the port it bound in bound_ports.
        self.start_funcs: list[tuple[str, Callable[[Server], Awaitable[None]]]] = []
        self.stop_funcs: list[Callable[[], Awaitable[None]]] = []
        self.bound_ports: dict[str, int] = {}
        self._add_base_debug_routes()

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

    def run_until(self, name: str, skip_unimplemented: bool = False) -> Server:
        """Run every stage up to and including ``name``, in order. Returns self."""
        stage(name)  # fail early on a typo
        for s in STAGES:
            if s.name not in self.completed and s.name not in self.skipped:
                try:
                    self.run_stage(s.name)
                except StageNotImplemented as err:
                    if not skip_unimplemented:
                        raise
                    log.warning("%s — skipped", err)
                    self.skipped.append(s.name)
            if s.name == name:
                break
        return self

    def run_all(self, skip_unimplemented: bool = False) -> Server:
        return self.run_until(STAGE_NAMES[-1], skip_unimplemented=skip_unimplemented)

    # -- stage 1 ------------------------------------------------------------------------------
    def init_kube_client(self) -> None:
        """Create the Kubernetes client, but only when istiod would need one.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L510-L555.
        istiod builds a client when Kubernetes is a config source (a kubeconfig with no
        ``configSources`` in the mesh config file, or a ``k8s://`` source) or a service registry
        (``--registries`` includes Kubernetes, the default). mesh adds one kind of cluster: a
        trace, replayed on the server's clock.
        """
        args = self.args
        if self.kube_client is not None:  # already given (server.go#L511-L514)
            self.environment.domain_suffix = args.domain_suffix or self.kube_client.domain_suffix
            return
        needs = self._has_k8s_config_store() or "Kubernetes" in args.registries
        if not needs:
            log.info("no Kubernetes config source or registry: running without a kube client")
            return
        if args.trace is not None:
            trace = load_trace(args.trace)
            if args.loopback_addresses:
                trace = to_loopback(trace)
            self.kube_client = ReplayClient(trace, self.clock, speed=args.speed)
        elif args.kubeconfig is not None:
            from mesh.kube.live import LiveClient  # the official client is only loaded when used

            # Informer handlers run on the event loop serve runs on, like every other callback.
            self.kube_client = LiveClient(args.kubeconfig, loop=_running_loop())
        else:
            raise ValueError(
                "init_kube_client: the Kubernetes registry is enabled but no cluster was given: "
                "pass a trace or a kubeconfig, or set registries=() to run without Kubernetes"
            )
        self.environment.domain_suffix = args.domain_suffix or self.kube_client.domain_suffix

    def _has_k8s_config_store(self) -> bool:
        args = self.args
        if args.config_dir:
            return False  # a file config source replaces the cluster as the config store
        if args.mesh_config_file and Path(args.mesh_config_file).exists():
            sources = read_mesh_config_file(args.mesh_config_file).get("configSources") or []
            if not sources:
                return bool(args.kubeconfig or args.trace)
            return any(s.get("address") == "k8s://" for s in sources)
        return bool(args.kubeconfig or args.trace)

    # -- stage 2 ------------------------------------------------------------------------------
    def init_mesh_configuration(self) -> None:
        """Load MeshConfig: the file if there is one, else the ``istio`` ConfigMap, else defaults.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/mesh.go#L47-L97.
        With a ConfigMap, the watcher is fed by an informer: every edit is merged over Istio's
        defaults again; YAML Istio would refuse is logged and the last good config kept. The
        same ConfigMap's ``meshNetworks`` key feeds the networks watcher (stage 3 then has
        nothing to do). Afterwards the SPIFFE trust domain is set from the mesh config
        (server.go#L261).
        """
        args = self.args
        if args.mesh_config_file and Path(args.mesh_config_file).exists():
            self.environment.mesh_watcher = MeshWatcher(read_mesh_config_file(args.mesh_config_file),
                                                        source=f"file {args.mesh_config_file}")
            log.warning("using local mesh config file %s, in-cluster config ignored", args.mesh_config_file)
        elif self.kube_client is None:
            self.environment.mesh_watcher = MeshWatcher(default_mesh_config(), source="defaults")
            log.warning("using default mesh config: no mesh config file%s and no kube client",
                        f" {args.mesh_config_file}" if args.mesh_config_file else "")
        else:
            self._watch_mesh_configmap()
        self.trust_domain = self.environment.mesh()["trustDomain"]

    def mesh_configmap_name(self) -> str:
        rev = self.args.revision
        return MESH_CONFIGMAP_NAME if rev in ("", "default") else f"{MESH_CONFIGMAP_NAME}-{rev}"

    def _watch_mesh_configmap(self) -> None:
        name, namespace = self.mesh_configmap_name(), self.args.namespace
        origin = f"ConfigMap {namespace}/{name}"
        mesh_watcher = MeshWatcher(source=origin)
        networks_watcher = NetworksWatcher(source=origin)

        def on_configmap(cm: dict | None) -> None:
            data = (cm or {}).get("data") or {}
            if NETWORKS_CONFIGMAP_KEY in data:
                # A bad meshNetworks key makes istiod skip the whole ConfigMap, mesh key included
                # (https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/kubemesh/watcher.go#L33-L38).
                networks_watcher.handle_yaml(data[NETWORKS_CONFIGMAP_KEY], f"{origin} key {NETWORKS_CONFIGMAP_KEY}")
                if networks_watcher.last_failed:
                    return
            if cm is None:  # deleted: back to the defaults, as ReadConfigMap(nil) does
                mesh_watcher.set_mesh(default_mesh_config())
            elif MESH_CONFIGMAP_KEY not in data:
                message = f"{origin}: missing key {MESH_CONFIGMAP_KEY!r}; keeping the last good mesh config"
                log.warning("%s", message)
                mesh_watcher.errors.append(message)
            else:
                mesh_watcher.handle_yaml(data[MESH_CONFIGMAP_KEY], f"{origin} key {MESH_CONFIGMAP_KEY}")

        watch_configmap(self.kube_client, namespace, name, on_configmap)
        self.environment.mesh_watcher = mesh_watcher
        self.environment.networks_watcher = networks_watcher

    # -- stage 3 ------------------------------------------------------------------------------
    def init_mesh_networks(self) -> None:
        """Load MeshNetworks from ``--networksConfig``, unless the ConfigMap watcher already does.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/mesh.go#L101-L118.
        A file that cannot be read or parsed is logged and ignored (empty networks), as in istiod.
        """
        if self.environment.networks_watcher is not None:
            log.info("mesh networks come from the mesh ConfigMap watcher")
            return
        path = self.args.networks_file
        if path:
            try:
                networks = parse_mesh_networks(Path(path).read_text(encoding="utf-8"))
                self.environment.networks_watcher = NetworksWatcher(networks, source=f"file {path}")
                return
            except (OSError, MeshNetworksError) as err:
                log.warning("failed to read mesh networks configuration from %s: %s", path, err)
        log.info("mesh networks configuration not provided")
        self.environment.networks_watcher = NetworksWatcher(source="defaults")

    # -- stage 4 ------------------------------------------------------------------------------
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

    # -- stage 5 ------------------------------------------------------------------------------
    def init_networks_manager(self) -> None:
        """Create the NetworkManager: gateways per network, a full push when they change.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L203-L206 →
        https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/network.go#L93-L167.
        """
        self.environment.network_manager = NetworkManager(self.environment.networks_watcher,
                                                          self.xds.config_update)

    # -- stages later issues implement ----------------------------------------------------------
    def maybe_create_ca(self) -> None:
        """Create the CA that signs workload certificates: plugged-in files, or a self-signed root
        kept in the ``istio-ca-secret`` Secret (created on first start, reused after).

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1136-L1159
        (and ``createIstioCA`` in istio_ca.go). With a CA, istiod also runs the namespace
        controller that writes the root into every namespace (started with the Kubernetes
        registry: servicecontroller.go#L88). mesh starts it here, at once: replay informers are
        synced on creation, so there is nothing to wait for.
        """
        from mesh.security.ca import IstioCA
        from mesh.security.namespace_controller import NamespaceController

        args = self.args
        if args.cacerts_dir:
            self.ca = IstioCA.plugged(args.cacerts_dir)
        else:
            self.ca = IstioCA.self_signed(self.kube_client, args.namespace, self.environment.mesh()["trustDomain"],
                                          key_type=args.ca_key_type)
        log.info("CA ready: %s", self.ca.source)
        if self.kube_client is not None:
            self.namespace_controller = NamespaceController(self.kube_client, lambda: self.ca.root_pem)
            self.namespace_controller.run()

    def init_controllers(self) -> None:
        """Build the config store (CRDs or files, Gateway API, Ingress) and the service registries.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1104-L1122 →
        initConfigController (configcontroller.go#L61-L133) and initServiceControllers
        (servicecontroller.go#L31-L67); see ``mesh.bootstrap.controllers``. Sets
        ``environment.config_store`` and ``environment.service_discovery`` and adds the
        ``/debug/configz``, ``/debug/registryz`` and ``/debug/endpointz`` routes.
        """
        from mesh.bootstrap import controllers, controllers_debug

        self.controllers = controllers.init_controllers(self)
        self.environment.config_store = self.controllers.config_store
        self.environment.service_discovery = self.controllers.service_discovery
        self.debug_routes["/debug/configz"] = lambda q: controllers_debug.configz(self.environment.config_store)
        self.debug_routes["/debug/registryz"] = lambda q: controllers_debug.registryz(
            self.environment.service_discovery)
        self.debug_routes["/debug/endpointz"] = lambda q: controllers_debug.endpointz(
            self.environment.service_discovery, q)

    def init_generators(self) -> None:
        """The type URL → generator map: which code builds clusters, endpoints, listeners, routes.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L536-L572.
        istiod registers a dozen (SDS, NDS, ECDS, workload types for ambient, gRPC and debug
        generators); mesh implements the four an Envoy sidecar or gateway needs to route HTTP.
        """
        from mesh.xds.ads import default_generators

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
        from mesh.security.trustbundle import SOURCE_ISTIO_CA

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
        """istiod's own serving certificate, for the discovery address and the istiod Service names.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L939-L1013.
        Files given with ``tls_cert_file``/``tls_key_file`` win; otherwise the mesh CA signs one.
        """
        from mesh.security.istiod_cert import dns_names, load_istiod_cert, sign_istiod_cert

        args = self.args
        host = self.environment.mesh()["defaultConfig"]["discoveryAddress"].rsplit(":", 1)[0]
        if args.tls_cert_file and args.tls_key_file:
            self.istiod_cert = load_istiod_cert(args.tls_cert_file, args.tls_key_file)
        elif self.ca is not None:
            self.istiod_cert = sign_istiod_cert(self.ca, dns_names(host, args.namespace, args.revision))
        log.info("istiod certificate: %s", self.istiod_cert)

    def init_secure_discovery_service(self) -> None:
        """The secure gRPC server (15012): TLS with istiod's cert, client certs verified if given,
        serving the CA's ``IstioCertificateService`` now and ADS once stage 16 adds it.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L724-L780;
        the CA service is registered at the end of ``NewServer`` (``startCA`` → ``RunCA``,
        https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/istio_ca.go#L148-L195), here
        at once. Authenticators, in Istio's order: the client certificate, then a service-account
        token reviewed by ``self.token_reviewer`` (a live cluster's TokenReview API, or for a
        replayed cluster ``self.service_account_tokens``, which issues and reviews tokens itself).
        The port is bound by ``start`` after the informers synced (``bound_ports["secure_xds"]``).
        """
        from mesh.bootstrap.secure_grpc import SecureGrpcServer
        from mesh.security.caserver import CertificateService, ClientCertAuthenticator, KubeJWTAuthenticator
        from mesh.security.proto.ca_pb2_grpc import add_IstioCertificateServiceServicer_to_server
        from mesh.security.tls import server_context

        args = self.args
        if self.istiod_cert is None or "secure_xds" not in args.ports:
            log.warning("the secure discovery service is disabled (no istiod certificate or no secure_xds port)")
            return
        self.secure_grpc_server = SecureGrpcServer(
            lambda: server_context(self.istiod_cert, self._client_roots_pem(), alpn=["h2"]))
        if self.ca is not None:
            authenticators = [ClientCertAuthenticator(self.secure_grpc_server.peer_certificate)]
            reviewer = self._pick_token_reviewer()
            if reviewer is not None:
                authenticators.append(KubeJWTAuthenticator(reviewer, lambda: self.environment.mesh()["trustDomain"]))
            self.ca_service = CertificateService(self.ca, authenticators)
            add_IstioCertificateServiceServicer_to_server(self.ca_service, self.secure_grpc_server)

        async def serve_secure_grpc(server: Server) -> None:
            port = await server.secure_grpc_server.start(args.host, args.ports["secure_xds"])
            server.bound_ports["secure_xds"] = port
            server.stop_funcs.append(server.secure_grpc_server.stop)

        self.add_start_func("secure gRPC", serve_secure_grpc)
        self.debug_routes["/debug/ca"] = lambda q: {
            **(self.ca_service.describe() if self.ca_service else {}),
            "secure_grpc": self.secure_grpc_server.describe()}

    def _client_roots_pem(self) -> str:
        """Roots a client certificate may chain to: the CA's, plus the workload trust bundle."""
        roots = [self.ca.root_pem] if self.ca is not None else []
        roots += [p for p in self.environment.trust_bundle.pems() if p not in roots]
        return "".join(roots)

    def _pick_token_reviewer(self):
        if self.token_reviewer is None and self.kube_client is not None:
            from mesh.security.tokens import LiveTokenReviewer, ServiceAccountTokens

            if isinstance(self.kube_client, ReplayClient):  # no TokenReview API: mesh issues and reviews tokens
                self.service_account_tokens = ServiceAccountTokens(self.kube_client)
                self.token_reviewer = self.service_account_tokens
            else:  # a live cluster (LiveClient): ask its API server
                self.token_reviewer = LiveTokenReviewer(self.kube_client)
        return self.token_reviewer

    def init_secure_webhook_server(self) -> None:
        """The HTTPS webhook server (15017) for ``/inject`` and ``/validate``, and the ``caBundle``
        of the injector's and the validator's webhook configurations patched to the CA root.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/webhook.go#L42-L66 (only
        with a kube client, server.go#L316-L317). Routes come from ``self.webhook_route_adders``
        (stages 13 and 14 append theirs), read when ``start`` serves the port. Istio starts the
        caBundle patchers from the injector (sidecarinjector.go#L92-L105) and the validation
        controller; mesh starts both here, next to the server they are for. They patch only when
        the CA root really signed istiod's certificate (not with ``--tls-cert`` files).
        """
        from mesh.bootstrap.webhook_server import build_webhook_app
        from mesh.security.ca import CAError, load_pem_certs, verify_chain
        from mesh.security.tls import server_context
        from mesh.util.web import serve_app
        from mesh.webhooks import validation
        from mesh.webhooks.certpatch import WebhookCertPatcher

        args = self.args
        if self.kube_client is None:
            log.info("no kube client: no webhook server (nothing would call it)")
            return
        if self.istiod_cert is None or "webhook" not in args.ports:
            log.warning("the secure webhook server is disabled (no istiod certificate or no webhook port)")
            return
        self.webhook_route_adders.append(validation.add_routes)  # stage 14 may add it again: built once
        if self.ca is not None:
            chain = load_pem_certs(self.istiod_cert.chain_pem.encode())
            try:
                verify_chain(chain[0], chain[1:], self.ca.bundle.root_certs)
            except CAError:
                log.info("istiod's certificate is not signed by the mesh CA: caBundle left to the installer")
            else:
                self.webhook_patcher = WebhookCertPatcher(self.kube_client, args.revision, lambda: self.ca.root_pem)
                self.webhook_patcher.run()

        async def serve_webhooks(server: Server) -> None:
            app = build_webhook_app(server.webhook_route_adders)
            runner, port = await serve_app(app, args.host, args.ports["webhook"],
                                                  server_context(server.istiod_cert))
            server.bound_ports["webhook"] = port
            server.stop_funcs.append(runner.cleanup)
            log.info("webhook server (HTTPS) on %s:%d", args.host, port)

        self.add_start_func("webhook server", serve_webhooks)

    def init_sidecar_injector(self) -> None:
        """Set up sidecar injection: the injector config watcher, the ``/inject`` webhook, and (on a
        replayed cluster) the admission step that sends new pods through it.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/sidecarinjector.go#L43-L112.
        Config files (``inject_config_file`` + ``inject_values_file``) win over the ConfigMap
        ``istio-sidecar-injector[-<rev>]``; with neither, istiod runs without injection. The
        ConfigMap is watched through the ConfigMap informer; a bad edit is logged and the last good
        config kept, but a bad config at startup stops the server, as it stops istiod. ``/inject``
        is served on the HTTPS webhook port and on the debug HTTP port; the decisions are at
        ``/debug/injection`` and in ``self.injection_webhook.decisions``.
        """
        from mesh.inject.admission import ReplayAdmission
        from mesh.inject.config import (
            InjectorConfigError,
            InjectorConfigWatcher,
            injector_configmap_name,
            load_files,
        )
        from mesh.inject.webhook import Webhook, add_routes, describe_decisions

        self.injection_webhook = None
        args = self.args
        config_file = args.inject_config_file
        if config_file:
            config, values = load_files(config_file, args.inject_values_file)
            watcher = InjectorConfigWatcher(config, values, source=f"file {config_file}")
        elif self.kube_client is not None:
            name, namespace = injector_configmap_name(args.revision), args.namespace
            if self.kube_client.get("configmaps", name, namespace) is None:
                log.info("skipping sidecar injector: ConfigMap %s/%s not found", namespace, name)
                return
            watcher = InjectorConfigWatcher()
            watch_configmap(self.kube_client, namespace, name, watcher.handle_configmap)
            if watcher.generation == 0:
                raise InjectorConfigError(watcher.errors[-1] if watcher.errors else f"{namespace}/{name}: unusable")
        else:
            log.info("skipping sidecar injector: no injection config files and no kube client")
            return
        webhook = Webhook(watcher, self.environment.mesh, revision=args.revision, clock=self.clock)
        if isinstance(self.kube_client, ReplayClient):
            ReplayAdmission(self.kube_client, webhook, args.namespace, args.revision).install()
        self.http_route_adders.append(lambda app: add_routes(app, webhook))
        self.webhook_route_adders.append(lambda app: add_routes(app, webhook))
        self.debug_routes["/debug/injection"] = lambda q: describe_decisions(webhook.decisions)
        self.injection_webhook = webhook

    def init_config_validation(self) -> None:
        """The ``/validate`` webhook: kube-apiserver asks it before storing Istio config.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/validation.go#L25-L53.
        Only with a kube client (no cluster, no admission). The rules are in
        ``mesh.config.validation``, the HTTP handler in ``mesh.webhooks.validation``; it is served on
        the debug port and, once stage 12 has made it, on the HTTPS webhook port. On a replayed
        cluster, ``mesh.webhooks.replay.ReplayValidation`` plays kube-apiserver's validating step
        (bad Istio config is refused before any informer sees it); its decisions are at
        ``/debug/validation`` and in ``self.config_validation.decisions``.
        """
        from mesh.webhooks import validation
        from mesh.webhooks.replay import ReplayValidation, describe_decisions

        self.config_validation = None
        if self.kube_client is None:
            return
        self.http_route_adders.append(validation.add_routes)
        adders = getattr(self, "webhook_route_adders", None)
        if adders is not None:
            adders.append(validation.add_routes)
        if isinstance(self.kube_client, ReplayClient):
            checker = ReplayValidation(self.kube_client, self.args.namespace, self.args.revision).install()
            self.config_validation = checker
            self.debug_routes["/debug/validation"] = lambda q: describe_decisions(checker.decisions)

    def init_registry_event_handlers(self) -> None:
        """Turn registry and config changes into push requests.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L843-L924.
        * a service added or deleted, or updated in a way a proxy can see
          (``serviceUpdateNeedsPush``) → full push, reason ``service``, ConfigsUpdated = the
          service as a ServiceEntry key;
        * an Istio config added, deleted, or updated with a changed spec (``needsPush``) → full push,
          reason ``config``, ConfigsUpdated = that config; ServiceEntry and WorkloadEntry are left
          to the ServiceEntry registry, which pushes for them itself;
        * new endpoints of a service → ``XDSServer.EDSUpdate``: an incremental (EDS-only) push,
          reason ``endpoint`` (full the first time a service has endpoints). In istiod the registry
          calls EDSUpdate directly; mesh routes it through the aggregate's ``eds_handlers`` so this
          stage is the one place where changes become pushes.
        Config handlers registered now are told about every existing config, so the first push
        after startup covers it; the service registry does not replay existing services (proxies
        get them anyway: a new connection is sent everything).
        """
        from mesh.config.crdclient import needs_push
        from mesh.serviceregistry.events import EVENT_UPDATE, service_update_needs_push

        xds = self.xds
        registry = self.environment.service_discovery
        if registry is not None:
            def on_service(prev, curr, event: str) -> None:
                if event == EVENT_UPDATE and not service_update_needs_push(prev, curr):
                    return
                svc = curr or prev
                xds.config_update(PushRequest.of(
                    TriggerReason.SERVICE, configs={ConfigKey("ServiceEntry", svc.hostname, svc.namespace)}))

            def on_endpoints(hostname: str, namespace: str, endpoints) -> None:
                xds.eds_update(hostname, namespace, endpoints)  # incremental, or full for a new service

            registry.append_service_handler(on_service)
            registry.eds_handlers.append(on_endpoints)
            # The endpoints already known are istiod's initial EndpointIndex (filled during its cache
            # sync), so the first change to them after start is incremental, not "a new service".
            for svc in registry.services():
                endpoints = [e for p in svc.ports for e in registry.endpoints(svc.hostname, p.port)]
                if endpoints:
                    xds.endpoint_index[(svc.hostname, svc.namespace)] = frozenset(
                        e.service_account for e in endpoints if e.service_account)

        store = self.environment.config_store
        if store is not None:
            def on_config(prev, curr, event: str) -> None:
                if event == EVENT_UPDATE and not needs_push(prev, curr):
                    log.debug("skipping push for %s/%s: spec unchanged", curr.namespace, curr.name)
                    return
                cfg = curr or prev
                xds.config_update(PushRequest.of(
                    TriggerReason.CONFIG, configs={ConfigKey(cfg.kind, cfg.name, cfg.namespace)}))

            for kind in store.schemas():
                if kind not in ("ServiceEntry", "WorkloadEntry", "WorkloadGroup"):
                    store.register_event_handler(kind, on_config)

    def init_discovery_service(self) -> None:
        """Start the push machinery: the debounce loop and the ADS server Envoys connect to.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L642-L650
        adds a start func that runs ``DiscoveryServer.Start`` (debounce + push sender,
        discovery.go#L229-L235); the gRPC listeners open last in ``Server.Start`` (#L437-L463).
        mesh does the same: the ADS server is made here, registered on the TLS gRPC server of
        stage 11 too, and listens on the xDS port when ``start()`` runs. Until the informers have
        synced, a new stream is refused with UNAVAILABLE, as istiod refuses it.
        """
        from mesh.xds import debug
        from mesh.xds.ads import AdsServer

        ads = AdsServer(self.xds, self.xds_generators, self.environment.service_discovery,
                        self.environment.config_store, domain=self.environment.domain_suffix,
                        is_ready=self.has_synced)
        ads.trust_domain = lambda: self.environment.mesh()["trustDomain"]  # inbound mTLS accepts this domain
        self.ads = ads
        if self.secure_grpc_server is not None:
            self.secure_grpc_server.add_generic_rpc_handlers(ads.rpc_handlers())

        async def start_xds(server: Server) -> None:
            server.xds.start()
            port = await ads.start(server.args.host, server.args.ports.get("xds", 15010))
            server.bound_ports["xds"] = port
            server.stop_funcs.append(ads.stop)

        async def start_monitoring(server: Server) -> None:
            from mesh.bootstrap.http import build_monitoring_app
            from mesh.util.web import serve_app

            runner, port = await serve_app(build_monitoring_app(ads.metrics.registry), server.args.host,
                                            server.args.ports.get("monitoring", 15014))
            server.bound_ports["monitoring"] = port
            server.stop_funcs.append(runner.cleanup)

        self.add_start_func("xds server", start_xds)
        self.add_start_func("monitoring", start_monitoring)

        def config_dump(q: dict) -> dict:
            if "proxyID" not in q:
                raise ValueError("config_dump needs ?proxyID=<pod>.<namespace>")
            dump = debug.config_dump(ads, q["proxyID"])
            if dump is None:
                raise KeyError(f"proxy {q['proxyID']} is not connected")
            return dump

        self.debug_routes.update({
            "/debug/syncz": lambda q: debug.syncz(ads, q.get("namespace")),
            "/debug/adsz": lambda q: debug.adsz(ads, push=q.get("push") == "true"),
            "/debug/config_dump": config_dump,
            "/debug/push_status": lambda q: debug.push_status(ads),
            "/debug/proxy_status": lambda q: debug.proxy_status(ads),
        })

    # -- Server.Start --------------------------------------------------------------------------
    def add_start_func(self, name: str, fn: Callable[[Server], Awaitable[None]]) -> None:
        self.start_funcs.append((name, fn))

    async def start(self, sync_timeout: float = 30.0) -> None:
        """``Server.Start``: serve the debug port, run the start funcs, wait for informer sync.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L415-L476.
        Like istiod, components start first, then the caches must sync before anything that
        serves proxies accepts connections. Ports are recorded in ``bound_ports``.
        """
        import asyncio

        from mesh.bootstrap.http import build_debug_app
        from mesh.util.web import serve_app

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

    async def stop(self) -> None:
        """Stop serving, in reverse start order, then close the kube client."""
        for fn in reversed(self.stop_funcs):
            try:
                await fn()
            except Exception:  # keep stopping the rest
                log.exception("error while stopping")
        self.stop_funcs.clear()
        self.close()

    # -- readiness and debug ----------------------------------------------------------------------
    def has_synced(self) -> bool:
        """``cachesSynced``: every informer has listed once (no client: trivially true)."""
        return self.kube_client is None or self.kube_client.has_synced()

    def is_ready(self) -> bool:
        return self.has_synced() and all(probe() for probe in self.readiness.values())

    def _add_base_debug_routes(self) -> None:
        self.debug_routes["/debug/mesh"] = lambda q: self.environment.mesh()
        self.debug_routes["/debug/meshnetworks"] = lambda q: self.environment.networks()
        self.debug_routes["/debug/networkz"] = lambda q: [
            gw._asdict() for gw in (self.environment.network_manager.unresolved
                                    if self.environment.network_manager else [])
        ]
        self.debug_routes["/debug/stages"] = lambda q: [
            {"number": s.number, "name": s.name, "go": s.go_name,
             "state": "done" if s.name in self.completed else "skipped" if s.name in self.skipped else "pending"}
            for s in STAGES
        ]
        self.debug_routes["/debug/push_requests"] = lambda q: [
            {"at": round(r.at, 3), "full": r.request.full, "reason": dict(r.request.reason),
             "configs": sorted(str(c) for c in r.request.configs_updated)}
            for r in self.xds.requests
        ]

    def close(self) -> None:
        self.xds.stop()
        if self.kube_client is not None:
            self.kube_client.close()


def _running_loop():
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # constructed outside asyncio (a notebook, a test): handlers run on watch threads
        return None
