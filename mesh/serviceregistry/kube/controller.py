"""The Kubernetes service registry: Services, EndpointSlices, Pods and Nodes → model services and endpoints.

Go: ``kube/controller.Controller``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/controller/controller.go —
``NewController`` (#L230-L325) registers handlers on the informers; ``onServiceEvent``,
``deleteService``, ``addOrUpdateService`` (#L392-L479) keep ``servicesMap``; ``getPodLocality``
(#L654-L679) reads the pod's node; ``InstancesByPort`` (#L681-L702); ``Network`` (#L363-L380).
EndpointSlices are handled by
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/controller/endpointslice.go
(``processEndpointEvent``/``updateEDS``, #L361-L416) and pods by ``pod.go``.

What happens on each event:

* **Service** add/update → convert, store by hostname, refresh the EDS cache for it (no push),
  ``svc_update``, then the service handlers (stage 15 turns those into a full push).
  Delete → forget it, same notifications.
* **EndpointSlice** → rebuild the endpoints of the slice's service, then ``eds_update`` with the
  host's full endpoint list: an incremental (EDS) push. For a headless service, a full push
  (reason ``headlessendpoint``) too, because each pod gets its own listener.
* **Pod** → the pod cache (ready pods by IP); workload handlers hear about pods entering and
  leaving it; a label change asks for a push to that pod's proxy.
* **Node** → nothing by itself; nodes are read for locality when endpoints are built.

Simplifications, named: one cluster (``cluster_id``, default ``Kubernetes`` as istiod); events
are handled synchronously (Go queues them); no discovery-namespace filtering, MCS, ambient,
NodePort gateway addresses or network gateways from Services.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable

from mesh.kube.client import KubeClient
from mesh.kube.selectors import matches_labels
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.model.service import HealthStatus, IstioEndpoint, Service
from mesh.serviceregistry.events import (
    EVENT_ADD,
    EVENT_DELETE,
    EVENT_UPDATE,
    ServiceHandler,
    WorkloadHandler,
    WorkloadInstance,
    XdsUpdater,
)
from mesh.serviceregistry.kube import endpoints as epb
from mesh.serviceregistry.kube.conversion import convert_service, service_hostname, spiffe_uri
from mesh.serviceregistry.kube.pods import PodCache, pod_key

log = logging.getLogger(__name__)

DEFAULT_CLUSTER_ID = "Kubernetes"


class KubeRegistry:
    """One cluster's services and endpoints (``provider: Kubernetes``)."""

    provider = "Kubernetes"

    def __init__(self, client: KubeClient, updater: XdsUpdater, domain_suffix: str = "cluster.local",
                 trust_domain: Callable[[], str] = lambda: "cluster.local",
                 mesh_networks: Callable[[], dict] = lambda: {}, system_namespace: str = "istio-system",
                 cluster_id: str = DEFAULT_CLUSTER_ID, send_unhealthy_endpoints: bool = False):
        self.client = client
        self.updater = updater
        self.domain_suffix = domain_suffix
        self.trust_domain = trust_domain
        self.mesh_networks = mesh_networks
        self.system_namespace = system_namespace
        self.cluster_id = cluster_id
        self.send_unhealthy_endpoints = send_unhealthy_endpoints  # PILOT_SEND_UNHEALTHY_ENDPOINTS
        self.services_map: dict[str, Service] = {}
        self.external_name_endpoints: dict[str, list[IstioEndpoint]] = {}
        self.endpoint_cache = epb.EndpointSliceCache()
        self.workload_instances: dict[tuple[str, str], WorkloadInstance] = {}  # WorkloadEntries, (ns, name)
        self.service_handlers: list[ServiceHandler] = []
        self.workload_handlers: list[WorkloadHandler] = []
        self.network_from_namespace = ""

        # Informers, registered in the order their objects are needed: nodes before pods
        # (locality), pods before slices (pod lookup), services before slices (health, headless).
        self.namespaces = client.informer("namespaces")
        self.nodes = client.informer("nodes")
        self.services_informer = client.informer("services")
        self.pods = client.informer("pods")
        self.slices = client.informer("endpointslices")
        self.pod_cache = PodCache(self.pods.get, self._resync_slice, updater.proxy_update)

        self.running = False
        self._slices_watched = False

    def run(self) -> None:
        """Register the informer handlers; every cached object arrives as an add, in the order
        nodes/namespaces, services, pods, slices (istiod: ``Run`` after ``NewController``)."""
        if self.running:
            return
        self.running = True
        self.namespaces.add_event_handler(
            on_add=lambda ns: self._on_namespace(ns),
            on_update=lambda old, ns: self._on_namespace(ns),
        )
        self.services_informer.add_event_handler(
            on_add=lambda s: self._on_service(s, EVENT_ADD),
            on_update=lambda old, s: self._on_service(s, EVENT_UPDATE),
            on_delete=lambda s: self._on_service(s, EVENT_DELETE),
        )
        self.pods.add_event_handler(
            on_add=lambda p: self._on_pod(p, EVENT_ADD),
            on_update=self._on_pod_update,
            on_delete=lambda p: self._on_pod(p, EVENT_DELETE),
        )
        self.slices.add_event_handler(
            on_add=lambda s: self._on_slice(s, EVENT_ADD),
            on_update=lambda old, s: self._on_slice(s, EVENT_UPDATE),
            on_delete=lambda s: self._on_slice(s, EVENT_DELETE),
        )
        self._slices_watched = True

    # -- ServiceDiscovery ---------------------------------------------------------------------
    def services(self) -> list[Service]:
        return [self.services_map[h] for h in sorted(self.services_map)]

    def get_service(self, hostname: str) -> Service | None:
        return self.services_map.get(hostname)

    def all_endpoints(self, hostname: str) -> list[IstioEndpoint]:
        """Every endpoint of a host, all ports (what ``eds_update`` carries)."""
        svc = self.services_map.get(hostname)
        found = self.endpoint_cache.get(hostname)
        if svc is not None:
            found = found + self._workload_entry_endpoints(svc)
        return found

    def endpoints(self, hostname: str, port: int) -> list[IstioEndpoint]:
        """``InstancesByPort``: endpoints serving service port ``port``; ExternalName as fallback."""
        svc = self.services_map.get(hostname)
        if svc is None:
            return []
        svc_port = svc.port_by_number(port)
        if svc_port is None:
            return []
        found = [ep for ep in self.all_endpoints(hostname) if ep.service_port_name == svc_port.name]
        if found:
            return found
        return [ep for ep in self.external_name_endpoints.get(hostname, []) if ep.endpoint_port == port]

    def pod_by_ip(self, ip: str) -> dict | None:
        """The ready pod with this IP (``getPodByIP``)."""
        return self.pod_cache.pod_by_ip(ip)

    def pod_by_proxy(self, pod_name: str, namespace: str, ip: str) -> dict | None:
        """``getPodByProxy``: by the name in the node id first, then by IP."""
        pod = self.pod_cache.pod_by_key(namespace, pod_name) if pod_name else None
        return pod or self.pod_by_ip(ip)

    def proxy_workload_labels(self, proxy) -> dict[str, str] | None:
        """``GetProxyWorkloadLabels``: the labels of the proxy's pod, plus ``istio-locality`` (the
        pod's locality, for a proxy without service instances) and, for a proxy whose metadata
        names no node, ``kubernetes.io/hostname``; None when the pod is not known."""
        pod = self.pod_by_proxy(proxy.pod_name, proxy.namespace, proxy.ip_addresses[0])
        if pod is None:
            return None
        out = dict((pod.get("metadata") or {}).get("labels") or {})
        locality = self.pod_locality(pod)
        if locality:
            out[epb.LOCALITY_LABEL] = locality
        node = (pod.get("spec") or {}).get("nodeName", "")
        if node and not proxy.node_name:
            out[epb.HOSTNAME_LABEL] = node
        return out

    def append_service_handler(self, handler: ServiceHandler) -> None:
        self.service_handlers.append(handler)

    def append_workload_handler(self, handler: WorkloadHandler) -> None:
        self.workload_handlers.append(handler)

    def has_synced(self) -> bool:
        return all(i.has_synced() for i in (self.namespaces, self.nodes, self.services_informer, self.pods,
                                            self.slices))

    # -- services -------------------------------------------------------------------------------
    def _on_service(self, obj: dict, event: str) -> None:
        svc = convert_service(obj, self.domain_suffix, self.trust_domain())
        if event == EVENT_DELETE:
            self.services_map.pop(svc.hostname, None)
            self.external_name_endpoints.pop(svc.hostname, None)
            self.updater.svc_update(svc.hostname, svc.namespace, EVENT_DELETE)
            self._notify_service(None, svc, EVENT_DELETE)
            return
        prev = self.services_map.get(svc.hostname)
        self.services_map[svc.hostname] = svc
        if svc.external_name:
            self.external_name_endpoints[svc.hostname] = [
                IstioEndpoint(address=svc.external_name, endpoint_port=p.port, service_port_name=p.name,
                              labels=dict(svc.labels), namespace=svc.namespace)
                for p in svc.ports
            ]
        else:
            self.external_name_endpoints.pop(svc.hostname, None)
        endpoints = self.all_endpoints(svc.hostname)
        if endpoints:  # keep the EDS cache in step with the new service, without a push
            self.updater.eds_cache_update(svc.hostname, svc.namespace, endpoints)
        self.updater.svc_update(svc.hostname, svc.namespace, event)
        self._notify_service(prev, svc, event)

    def _notify_service(self, prev: Service | None, curr: Service | None, event: str) -> None:
        for handler in list(self.service_handlers):
            handler(prev, curr, event)

    # -- pods -----------------------------------------------------------------------------------
    def _on_pod_update(self, old: dict, cur: dict) -> None:
        self.pod_cache.label_filter(old, cur)
        self._on_pod(cur, EVENT_UPDATE)

    def _on_pod(self, pod: dict, event: str) -> None:
        reported = self.pod_cache.on_event(pod, event)
        if reported is None or not self.workload_handlers:
            return
        instance = self.workload_instance_for_pod(pod)
        for handler in list(self.workload_handlers):
            handler(instance, reported)

    def workload_instance_for_pod(self, pod: dict) -> WorkloadInstance:
        """``notifyWorkloadHandlers``: a pod as a port-less endpoint plus its named TCP ports."""
        ns, name = pod_key(pod)
        ip = ((pod.get("status") or {}).get("podIP")) or ""
        port_map: dict[str, int] = {}
        for container in (pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                if port.get("name") and port.get("protocol", "TCP") == "TCP":
                    port_map.setdefault(port["name"], int(port["containerPort"]))
        return WorkloadInstance(
            name=name,
            namespace=ns,
            kind="Pod",
            endpoint=self.build_endpoint(pod, ip, 0, ""),
            port_map=port_map,
        )

    # -- endpoints ------------------------------------------------------------------------------
    def _on_slice(self, es: dict, event: str) -> None:
        labels = (es.get("metadata") or {}).get("labels") or {}
        if labels.get(epb.MANAGED_BY_LABEL) == epb.MIRRORING_CONTROLLER:
            return  # mirrored from an Endpoints object: istiod ignores these
        service_name = labels.get(epb.SERVICE_NAME_LABEL)
        if not service_name:
            return  # not attached to a service
        namespace = es["metadata"].get("namespace", "")
        hostname = service_hostname(service_name, namespace, self.domain_suffix)
        slice_name = es["metadata"]["name"]
        if event == EVENT_DELETE:
            for endpoint in es.get("endpoints") or []:
                for address in endpoint.get("addresses") or []:
                    self.pod_cache.endpoint_deleted(namespace, slice_name, address)
            self.endpoint_cache.delete(hostname, slice_name)
        else:
            self.endpoint_cache.update(hostname, slice_name, self._build_slice_endpoints(es, hostname))
        self.updater.eds_update(hostname, namespace, self.all_endpoints(hostname))
        k8s_service = self.services_informer.get(service_name, namespace)
        if k8s_service is not None and (k8s_service.get("spec") or {}).get("clusterIP") == "None":
            # Headless: every pod has its own listener, so endpoint changes need a full push.
            self.updater.config_update(
                PushRequest.of(
                    TriggerReason.HEADLESS_ENDPOINT, configs={ConfigKey("ServiceEntry", hostname, namespace)}
                )
            )

    def _resync_slice(self, name: str, namespace: str) -> None:
        es = self.slices.get(name, namespace)
        if es is not None:
            self._on_slice(es, EVENT_ADD)

    def _build_slice_endpoints(self, es: dict, hostname: str) -> list[IstioEndpoint]:
        if es.get("addressType") == "FQDN":
            return []  # FQDN slices are not supported by istiod
        namespace, slice_name = es["metadata"].get("namespace", ""), es["metadata"]["name"]
        out: list[IstioEndpoint] = []
        for endpoint in es.get("endpoints") or []:
            health = epb.endpoint_health(endpoint)
            if health is HealthStatus.UNHEALTHY and not self.send_unhealthy_endpoints:
                continue
            target = endpoint.get("targetRef") or {}
            for address in endpoint.get("addresses") or []:
                pod, expect_pod = self._pod_for_endpoint(address, namespace, target)
                if pod is None and expect_pod:
                    # The slice came before its pod: skip for now, redo when the pod is ready.
                    self.pod_cache.queue_endpoint_event_on_pod_arrival(namespace, slice_name, address)
                    continue
                for port in es.get("ports") or []:
                    out.append(
                        self.build_endpoint(
                            pod, address, int(port.get("port") or 0), port.get("name") or "", health
                        )
                    )
        return out

    def _pod_for_endpoint(self, ip: str, namespace: str, target: dict) -> tuple[dict | None, bool]:
        """``getPod``: by targetRef if it names a Pod (then a pod is expected), else by IP."""
        if target.get("kind") == "Pod":
            return self.pod_cache.pod_by_key(
                target.get("namespace") or namespace, target.get("name", "")
            ), True
        pod = self.pod_cache.pod_by_ip(ip)
        if pod is not None and pod["metadata"].get("namespace") != namespace:
            pod = None  # never select a pod from another namespace by IP
        return pod, False

    def build_endpoint(
        self,
        pod: dict | None,
        address: str,
        port: int,
        port_name: str,
        health: HealthStatus = HealthStatus.HEALTHY,
    ) -> IstioEndpoint:
        """``NewEndpointBuilder(pod).buildIstioEndpoint(...)``."""
        labels: dict[str, str] = {}
        locality = sa = namespace = node = ""
        tls_mode = "disabled"
        if pod is not None:
            meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
            labels = dict(meta.get("labels") or {})
            namespace = meta.get("namespace", "")
            node = spec.get("nodeName", "")
            locality = self.pod_locality(pod)
            sa = spiffe_uri(self.trust_domain(), namespace, spec.get("serviceAccountName") or "default")
            tls_mode = epb.tls_mode_of(labels, meta.get("annotations") or {})
        network = self.network(address, labels)
        return IstioEndpoint(
            address=address,
            endpoint_port=port,
            service_port_name=port_name,
            labels=epb.augment_labels(labels, self.cluster_id, locality, node, network),
            service_account=sa,
            network=network,
            locality=locality,
            tls_mode=tls_mode,
            namespace=namespace,
            workload_name=epb.workload_name(pod),
            node_name=node,
            health=health,
        )

    def pod_locality(self, pod: dict) -> str:
        """``getPodLocality``: the ``istio-locality`` label, else the node's topology labels."""
        own = ((pod.get("metadata") or {}).get("labels") or {}).get(epb.LOCALITY_LABEL, "")
        if own:
            return own if "/" in own else own.replace(".", "/")
        node_name = (pod.get("spec") or {}).get("nodeName", "")
        node = self.nodes.get(node_name) if node_name else None
        if node is None and node_name:
            log.warning("unable to get node %r for pod %s/%s", node_name, *pod_key(pod))
        return epb.node_locality(node)

    # -- networks -------------------------------------------------------------------------------
    def network(self, ip: str, labels: dict[str, str]) -> str:
        """``Network``: the workload's label, else the system namespace's, else MeshNetworks."""
        if labels.get(epb.NETWORK_LABEL):
            return labels[epb.NETWORK_LABEL]
        if self.network_from_namespace:
            return self.network_from_namespace
        return self._network_from_mesh_networks(ip)

    def _network_from_mesh_networks(self, ip: str) -> str:
        networks = (self.mesh_networks() or {}).get("networks") or {}
        for name in sorted(networks):
            for ep in networks[name].get("endpoints") or []:
                if ep.get("fromRegistry") == self.cluster_id:
                    return name
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return ""
        for name in sorted(networks):
            for ep in networks[name].get("endpoints") or []:
                cidr = ep.get("fromCidr")
                if cidr and address in ipaddress.ip_network(cidr, strict=False):
                    return name
        return ""

    def _on_namespace(self, ns: dict) -> None:
        if ns["metadata"]["name"] != self.system_namespace:
            return
        network = ((ns["metadata"].get("labels") or {}).get(epb.NETWORK_LABEL)) or ""
        if network != self.network_from_namespace:
            self.network_from_namespace = network
            self.on_network_change()

    def on_network_change(self) -> None:
        """The default network changed: rebuild every endpoint (``onNetworkChange``)."""
        if not self._slices_watched:
            return  # the first sync of slices will use the new network
        for es in self.slices.list():
            self._on_slice(es, EVENT_ADD)

    # -- WorkloadEntries selected by Kubernetes Services -------------------------------------------
    def workload_instance_handler(self, instance: WorkloadInstance, event: str) -> None:
        """WorkloadEntries whose labels match a Service's selector serve it too
        (``PILOT_ENABLE_K8S_SELECT_WORKLOAD_ENTRIES``, on by default)."""
        if instance.kind != "WorkloadEntry":
            return
        key = (instance.namespace, instance.name)
        previous = self.workload_instances.get(key)
        if event == EVENT_DELETE:
            self.workload_instances.pop(key, None)
        else:
            self.workload_instances[key] = instance
        for svc in self.services():
            if svc.namespace != instance.namespace or not svc.selector:
                continue
            if any(
                w is not None and matches_labels(svc.selector, w.endpoint.labels)
                for w in (instance, previous)
            ):
                self.updater.eds_update(svc.hostname, svc.namespace, self.all_endpoints(svc.hostname))

    def _workload_entry_endpoints(self, svc: Service) -> list[IstioEndpoint]:
        if not svc.selector or not self.workload_instances:
            return []
        k8s = self.services_informer.get(svc.name, svc.namespace) or {}
        target_ports = {
            int(p.get("port", 0)): p.get("targetPort") for p in (k8s.get("spec") or {}).get("ports") or []
        }
        out: list[IstioEndpoint] = []
        for (ns, _), wi in sorted(self.workload_instances.items()):
            if ns != svc.namespace or not matches_labels(svc.selector, wi.endpoint.labels):
                continue
            for port in svc.ports:
                target = target_ports.get(port.port)
                if isinstance(target, int):
                    number = target
                elif isinstance(target, str) and target in wi.port_map:
                    number = wi.port_map[target]
                else:
                    number = port.port
                out.append(
                    dataclasses.replace(wi.endpoint, endpoint_port=number, service_port_name=port.name)
                )
        return out
