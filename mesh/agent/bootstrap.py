"""The Envoy bootstrap a sidecar starts from: who it is and where istiod is; nothing else.

Go: pilot-agent renders ``tools/packaging/common/envoy_bootstrap.json``
(https://github.com/istio/istio/blob/1.19.0/tools/packaging/common/envoy_bootstrap.json) with
values computed in https://github.com/istio/istio/blob/1.19.0/pkg/bootstrap/config.go, and the
node id comes from ``ServiceNode`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L884-L892).

Everything a sidecar will ever route comes over ADS; the bootstrap holds only

* the **node**: ``sidecar~<pod-ip>~<pod>.<ns>~<ns>.svc.cluster.local`` plus metadata istiod reads
  (namespace, labels, instance IPs, the HTTP proxy port, and ``INTERCEPTION_MODE``: ``NONE`` unless
  the caller says iptables captures the pod — Istio's injector writes ``REDIRECT`` there by
  default, mesh's loopback demo has no capture);
* one static cluster, ``xds-grpc``, reaching istiod over HTTP/2;
* ``dynamic_resources`` saying "clusters and listeners come from ADS". ``set_node_on_first_message_only``
  keeps the node out of every later request, as Istio does.

With a workload certificate (the agent was given a CA), one more static cluster, ``sds-grpc``,
reaches the agent's SDS server on its Unix socket, and the node metadata says so
(``MESH_WORKLOAD_CERT: SDS``) so istiod gives this proxy mTLS clusters and listeners.

Simplifications, named: plaintext xDS (port 15010), no stats/tracing clusters, and the admin
interface on 127.0.0.1 with a port chosen by the OS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.networking.tls import SDS_CLUSTER, SDS_METADATA

ISTIO_VERSION = "1.19.0"
XDS_CLUSTER = "xds-grpc"


@dataclass
class PodIdentity:
    name: str
    namespace: str
    ip: str
    labels: dict[str, str] = field(default_factory=dict)
    domain: str = "cluster.local"
    service_account: str = "default"
    proxy_type: str = "sidecar"  # or "router": an ingress gateway

    @classmethod
    def from_pod(cls, pod: dict, proxy_type: str = "sidecar", domain: str = "cluster.local") -> PodIdentity:
        """What pilot-agent learns about its pod (from the downward API): name, namespace, IP,
        labels, service account."""
        meta = pod["metadata"]
        return cls(meta["name"], meta["namespace"], pod["status"]["podIP"], dict(meta.get("labels") or {}),
                   domain=domain, service_account=(pod.get("spec") or {}).get("serviceAccountName", "default"),
                   proxy_type=proxy_type)

    @property
    def node_id(self) -> str:
        return f"{self.proxy_type}~{self.ip}~{self.name}.{self.namespace}~{self.namespace}.svc.{self.domain}"

    @property
    def service_cluster(self) -> str:
        """``node.cluster``: the workload's app label (or pod name) and namespace."""
        app = self.labels.get("app") or self.name
        return f"{app}.{self.namespace}"


def build_bootstrap(pod: PodIdentity, xds_host: str, xds_port: int, http_proxy_port: int | None = 15080,
                    sds_socket: str | None = None, interception_mode: str = "NONE") -> dict:
    metadata = {
        "NAMESPACE": pod.namespace,
        "NAME": pod.name,
        "INSTANCE_IPS": pod.ip,
        "LABELS": dict(pod.labels),
        "SERVICE_ACCOUNT": pod.service_account,
        "ISTIO_VERSION": ISTIO_VERSION,
        "CLUSTER_ID": "Kubernetes",
        "INTERCEPTION_MODE": interception_mode,
    }
    if http_proxy_port is not None:
        metadata["HTTP_PROXY_PORT"] = str(http_proxy_port)
    clusters = [_xds_cluster(xds_host, xds_port)]
    if sds_socket:
        metadata[SDS_METADATA] = "SDS"
        clusters.append(_sds_cluster(sds_socket))
    return {
        "node": {"id": pod.node_id, "cluster": pod.service_cluster, "metadata": metadata},
        "admin": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 0}}},
        "dynamicResources": {
            "adsConfig": {
                "apiType": "GRPC", "transportApiVersion": "V3", "setNodeOnFirstMessageOnly": True,
                # Reconnect quickly when istiod restarts: the default back-off reaches 30 s.
                "grpcServices": [{"envoyGrpc": {"clusterName": XDS_CLUSTER, "retryPolicy": {
                    "retryBackOff": {"baseInterval": "0.1s", "maxInterval": "1s"}}}}],
            },
            "cdsConfig": {"ads": {}, "initialFetchTimeout": "0s", "resourceApiVersion": "V3"},
            "ldsConfig": {"ads": {}, "initialFetchTimeout": "0s", "resourceApiVersion": "V3"},
        },
        "staticResources": {"clusters": clusters},
    }


_HTTP2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicitHttpConfig": {"http2ProtocolOptions": {}}}}


def _xds_cluster(xds_host: str, xds_port: int) -> dict:
    return {
        "name": XDS_CLUSTER,
        "type": "STATIC",
        "connectTimeout": "1s",
        "loadAssignment": {"clusterName": XDS_CLUSTER, "endpoints": [{"lbEndpoints": [{"endpoint": {
            "address": {"socketAddress": {"address": xds_host, "portValue": xds_port}}}}]}]},
        "typedExtensionProtocolOptions": _HTTP2,
    }


def _sds_cluster(socket_path: str) -> dict:
    """The agent's SDS server on a Unix socket (the ``sds-grpc`` cluster of Istio's bootstrap)."""
    return {
        "name": SDS_CLUSTER,
        "type": "STATIC",
        "connectTimeout": "1s",
        "loadAssignment": {"clusterName": SDS_CLUSTER, "endpoints": [{"lbEndpoints": [{"endpoint": {
            "address": {"pipe": {"path": socket_path}}}}]}]},
        "typedExtensionProtocolOptions": _HTTP2,
    }
