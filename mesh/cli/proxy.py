"""``python -m mesh proxy <pod>.<ns> --xds HOST:PORT --ip IP``: the mini pilot-agent.

Go: ``pilot-agent proxy`` https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-agent/app/cmd.go
— it builds the bootstrap for the pod it runs in and starts Envoy (:mod:`mesh.agent`). In a pod
the IP, labels and namespace come from the Downward API; here they are flags. ``--print-bootstrap``
prints the bootstrap and exits, so it can be read without running Envoy. Ctrl-C (or SIGTERM)
stops Envoy cleanly.

With ``--ca HOST:PORT`` (istiod's secure port, 15012), ``--root-cert`` (the mesh root, e.g. the
``root-cert.pem`` of the ``istio-ca-root-cert`` ConfigMap) and ``--token-file`` (a
service-account token for ``--service-account``; re-read at every renewal, as pilot-agent
re-reads ``istio-token``), the agent gets a workload certificate and serves it to Envoy over SDS,
so the sidecar takes part in mutual TLS (:mod:`mesh.agent.certs`, :mod:`mesh.agent.sds`).

``--netns NAME`` runs Envoy in that network namespace (``ip netns`` name) as uid and gid 1337, the
agent staying outside, as in a real pod (:mod:`mesh.agent.netns`); the pod IP is then the one
the namespace has. Without it the pod IP must be a loopback address (the loopback fallback).

``--delta``, or ``ISTIO_DELTA_XDS=true`` in the environment as for pilot-agent, bootstraps
Envoy with ``api_type: DELTA_GRPC``
(https://github.com/istio/istio/blob/1.19.0/pkg/bootstrap/config.go#L86-L89).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
from pathlib import Path

from mesh.agent.agent import EnvoyAgent
from mesh.agent.bootstrap import PodIdentity, delta_from_env
from mesh.agent.certs import WorkloadCertConfig
from mesh.agent.netns import NETNS_DIR
from mesh.cli import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser("proxy", help="run a real Envoy sidecar for a pod, fed by mesh's xDS")
    p.add_argument("pod", help="<pod name>.<namespace>, e.g. productpage-v1-abc.default")
    p.add_argument("--xds", default="127.0.0.1:15010", help="the xDS server, HOST:PORT (default 127.0.0.1:15010)")
    p.add_argument("--ip", required=True,
                   help="the pod IP: loopback (e.g. 127.10.0.5), or the namespace's address with --netns")
    p.add_argument("--netns", metavar="NAME", help="run Envoy in this network namespace (as `ip netns` names it)")
    p.add_argument("--delta", action="store_true",
                   help="Delta xDS: api_type DELTA_GRPC (also ISTIO_DELTA_XDS=true in the environment)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a pod label (repeatable)")
    p.add_argument("--domain", default="cluster.local", help="the cluster DNS domain")
    p.add_argument("--router", action="store_true", help="run as an ingress gateway (node type router)")
    p.add_argument("--http-proxy-port", type=int, default=15080, help="the outbound HTTP proxy port (default 15080)")
    p.add_argument("--log-level", default="warning", help="Envoy's log level")
    p.add_argument("--print-bootstrap", action="store_true", help="print the Envoy bootstrap JSON and exit")
    p.add_argument("--service-account", default="default", help="the pod's service account (default: default)")
    p.add_argument("--ca", metavar="HOST:PORT", help="istiod's secure port for a workload certificate (mTLS)")
    p.add_argument("--root-cert", metavar="FILE", help="with --ca: the mesh root certificate (PEM) to trust")
    p.add_argument("--token-file", metavar="FILE", help="with --ca: a service-account token for the CA")
    p.add_argument("--trust-domain", default="cluster.local", help="with --ca: the mesh trust domain")
    p.add_argument("--cert-ttl", type=int, default=0, metavar="SECONDS",
                   help="with --ca: the certificate lifetime to ask for (default: the CA's, 24 h)")
    p.set_defaults(func=run)


def parse_args(args) -> tuple[PodIdentity, str, int]:
    name, dot, namespace = args.pod.rpartition(".")
    if not dot or not name or not namespace:
        raise UsageError(f"pod {args.pod!r}: expected <pod name>.<namespace>")
    host, colon, port = args.xds.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise UsageError(f"--xds {args.xds!r}: expected HOST:PORT")
    try:
        ip = ipaddress.ip_address(args.ip)
    except ValueError as err:
        raise UsageError(f"--ip {args.ip!r}: {err}") from None
    netns = getattr(args, "netns", None)
    if netns is not None and not (NETNS_DIR / netns).exists():
        raise UsageError(f"--netns {netns}: no such network namespace ({NETNS_DIR / netns} does not exist)")
    if not ip.is_loopback and netns is None:
        raise UsageError(f"--ip {args.ip}: outside a --netns, mesh binds sidecars to loopback addresses "
                         "only (127.0.0.0/8)")
    labels = {}
    for item in args.label:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return (PodIdentity(name, namespace, str(ip), labels, domain=args.domain,
                        service_account=getattr(args, "service_account", "default"),
                        proxy_type="router" if args.router else "sidecar"), host, int(port))


def cert_config(args) -> WorkloadCertConfig | None:
    """The workload-certificate settings from ``--ca``/``--root-cert``/``--token-file``, or None."""
    ca = getattr(args, "ca", None)
    if not ca:
        if getattr(args, "root_cert", None) or getattr(args, "token_file", None):
            raise UsageError("--root-cert and --token-file need --ca HOST:PORT")
        return None
    host, colon, port = ca.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise UsageError(f"--ca {ca!r}: expected HOST:PORT")
    if not args.root_cert or not args.token_file:
        raise UsageError("--ca needs --root-cert FILE and --token-file FILE")
    try:
        root_pem = Path(args.root_cert).read_text()
        Path(args.token_file).read_text()
    except OSError as err:
        raise UsageError(f"cannot read {err.filename}: {err.strerror}") from None
    if "BEGIN CERTIFICATE" not in root_pem:
        raise UsageError(f"--root-cert {args.root_cert}: no PEM certificate in it")
    if args.cert_ttl < 0:
        raise UsageError(f"--cert-ttl {args.cert_ttl}: must be 0 (the CA's default) or more")
    token_file = Path(args.token_file)
    return WorkloadCertConfig(ca, root_pem, lambda: token_file.read_text().strip(), trust_domain=args.trust_domain,
                              ttl_seconds=args.cert_ttl)


def delta_setting(args, env: dict[str, str]) -> bool:
    """``--delta``, else ``ISTIO_DELTA_XDS`` from the environment."""
    try:
        return bool(getattr(args, "delta", False)) or delta_from_env(env)
    except ValueError as err:
        raise UsageError(str(err)) from None


def run(args) -> int:
    pod, host, port = parse_args(args)
    agent = EnvoyAgent(pod, host, port, http_proxy_port=args.http_proxy_port, log_level=args.log_level,
                       certs=cert_config(args), netns=args.netns, delta=delta_setting(args, dict(os.environ)))
    if args.print_bootstrap:
        print(json.dumps(agent.bootstrap(), indent=2))
        return 0
    return asyncio.run(_serve(agent))


async def _serve(agent: EnvoyAgent) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await agent.start()
    ip, port = agent.proxy_address
    print(f"envoy for {agent.pod.name}.{agent.pod.namespace}: node {agent.pod.node_id}")
    where = f"in network namespace {agent.netns}" if agent.netns else "on loopback"
    print(f"  {where}: admin http://{agent.admin_address}   outbound proxy {ip}:{port}   log {agent.log_path}")
    print(f"  XDS proxy {agent.xds_proxy.socket_path} -> {agent.xds_host}:{agent.xds_port} "
          f"({'DELTA_GRPC' if agent.delta else 'GRPC'})")
    print(f"  try: curl -H 'Host: <service>:<port>' http://{ip}:{port}/")
    waiter = asyncio.create_task(stop.wait())
    exited = asyncio.create_task(agent.process.wait())
    await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
    if exited.done():
        print(f"envoy exited with status {agent.process.returncode}:\n{agent.log_tail()}")
        waiter.cancel()
        return 1
    exited.cancel()
    await agent.stop()
    agent.cleanup()
    return 0
