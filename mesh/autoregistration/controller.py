"""The WorkloadEntry controller: a VM's proxy connects, istiod writes its WorkloadEntry.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/autoregistration/controller.go, created at
the end of ``initConfigController`` over the CRD store
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/configcontroller.go#L203) and held
by the DiscoveryServer; ADS calls it on both ends of a stream: ``initializeProxy`` calls
``RegisterWorkload`` before anything else about the proxy is computed
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L634-L652) and
``closeConnection`` calls ``QueueUnregisterWorkload``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L564-L576).

**Connect** (``RegisterWorkload``, controller.go#L191-L230). A proxy whose node metadata names a
WorkloadGroup (``AUTO_REGISTER_GROUP``, i.e. ``ISTIO_META_AUTO_REGISTER_GROUP`` on the VM) stands
for the WorkloadEntry ``<group>-<ip>[-<network>]`` (``autoregisteredWorkloadEntryName``,
#L591-L614, ``:`` of an IPv6 address turned into ``-``). If the entry exists, it is marked
connected again; if not, it is built from the group in the proxy's namespace
(``workloadEntryFromGroup``, #L636-L689) and created in the config store:

* spec: the group's ``template``, ``address`` the proxy's first IP, ``network`` the proxy's
  ``NETWORK`` when it has one;
* labels: the template's, then the group's ``metadata.labels``, then the proxy's own ``LABELS``
  (later ones win), without ``istio-locality``; they are the entry's labels and its spec's;
* annotations: ``istio.io/autoRegistrationGroup: <group>`` plus the group's
  ``metadata.annotations``, ``proxy.istio.io/health-checks-enabled: "true"`` when the proxy's
  ``PROXY_CONFIG`` has a readiness probe, and the connect stamp (``setConnectMeta``, #L171-L178):
  ``istio.io/workloadController: <istiod pod>`` and ``istio.io/connectedAt: <RFC 3339 time>``;
* an ownerReference to the group (controller: true), so Kubernetes deletes the entries with it.

No group → the stream fails with FAILED_PRECONDITION (#L299-L304). With
``ISTIO_WORKLOAD_ENTRY_VALIDATE_IDENTITY`` on (the default) the proxy must also have a verified
identity in the entry's namespace with the entry's service account (``ensureProxyCanControlEntry``,
#L233-L249); istiod verifies identities only on its TLS port, so a proxy on plaintext 15010 is
refused ("requires a verified identity") unless that flag is off.

A proxy that names an existing WorkloadEntry instead (``WORKLOAD_ENTRY``) and whose entry carries
``proxy.istio.io/health-checks-enabled`` is not auto-registered: the controller only stamps the
entry connected (``becomeControllerOf``, #L265-L275).

**Disconnect** (``QueueUnregisterWorkload``, #L402-L436, then ``unregisterWorkload``,
#L438-L470). Connections are counted per network+IP+entry+namespace: only the last one leaving
counts. Then, unless the entry was stamped by a newer connection or another istiod
(``changeWorkloadEntryStateToDisconnected``, #L348-L387), ``connectedAt`` is replaced by
``istio.io/disconnectedAt`` and a cleanup is scheduled ``PILOT_WORKLOAD_ENTRY_GRACE_PERIOD`` (10 s)
later: if the entry is still disconnected and the grace period has passed, the auto-registered
entry is deleted (``shouldCleanupEntry``, #L506-L541, ``deleteEntry``, #L562-L570). A proxy
that reconnects within the grace period is stamped connected again, and the cleanup finds
``connectedAt`` and leaves the entry alone. Every ``10 × grace`` the controller also looks at
every WorkloadEntry (``periodicWorkloadEntryCleanup``, #L481-L504): that removes entries whose
cleanup was lost (an istiod that died before it ran), and entries still "connected" longer than
the maximum connection age × 1.5 (#L121-L129; istiod's default age is infinite, Istio's Helm chart
sets ``--keepaliveMaxServerConnectionAge 30m``).

Times come from the server's clock: on the virtual clock the stamps are the trace's epoch plus
virtual seconds (``mesh.kube.simcluster.EPOCH``), so a replay writes the same annotations every run.

Simplifications, named: the unregister queue is a direct call, without its five retries; the
cleanup is not rate-limited (Go: 20 deletes/s); the periodic scan is armed only while the store
holds an auto-registered or controlled entry (so a virtual clock with no VM runs out of timers);
health checking is not modelled (``WORKLOAD_ENTRY_HEALTH_CHECKS``' health conditions are never
written, so health-checked entries are never cleaned up); the proxy's locality is never copied
(in Go it is still unset when ``RegisterWorkload`` runs, so the template's stays anyway).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mesh.clock import Clock, VirtualClock
from mesh.kube.simcluster import EPOCH
from mesh.model.config import Config
from mesh.model.proxy import Proxy

log = logging.getLogger(__name__)

AUTO_REGISTRATION_GROUP = "istio.io/autoRegistrationGroup"  # annotation.IoIstioAutoRegistrationGroup
CONNECTED_AT = "istio.io/connectedAt"  # annotation.IoIstioConnectedAt
DISCONNECTED_AT = "istio.io/disconnectedAt"  # annotation.IoIstioDisconnectedAt
WORKLOAD_CONTROLLER = "istio.io/workloadController"  # annotation.IoIstioWorkloadController
HEALTH_CHECKS_ENABLED = "proxy.istio.io/health-checks-enabled"  # status.WorkloadEntryHealthCheckAnnotation
LOCALITY_LABEL = "istio-locality"  # model.LocalityLabel
MAX_NAME = 253


@dataclass(frozen=True)
class Features:
    """The flags of pilot/pkg/features this controller reads (pilot.go#L489-L497, #L671-L674)."""

    auto_registration: bool = True  # PILOT_ENABLE_WORKLOAD_ENTRY_AUTOREGISTRATION
    health_checks: bool = True  # PILOT_ENABLE_WORKLOAD_ENTRY_HEALTHCHECKS
    grace_period: float = 10.0  # PILOT_WORKLOAD_ENTRY_GRACE_PERIOD, seconds
    validate_identity: bool = True  # ISTIO_WORKLOAD_ENTRY_VALIDATE_IDENTITY

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Features:
        """Read the flags from ``env`` (default: this process's environment); a malformed value
        is a ValueError naming the variable."""
        env = os.environ if env is None else env
        return cls(
            auto_registration=parse_bool(env, "PILOT_ENABLE_WORKLOAD_ENTRY_AUTOREGISTRATION", True),
            health_checks=parse_bool(env, "PILOT_ENABLE_WORKLOAD_ENTRY_HEALTHCHECKS", True),
            grace_period=parse_duration(env, "PILOT_WORKLOAD_ENTRY_GRACE_PERIOD", 10.0),
            validate_identity=parse_bool(env, "ISTIO_WORKLOAD_ENTRY_VALIDATE_IDENTITY", True),
        )


def parse_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``strconv.ParseBool``, as istio's ``env.Register`` reads a boolean."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"{name}={value!r}: not a boolean (true/false/1/0)")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(env: Mapping[str, str], name: str, default: float) -> float:
    """Go's ``time.ParseDuration`` ("10s", "1m30s", "500ms"), in seconds."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if value == "0":
        return 0.0
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"{name}={value!r}: not a duration (such as 10s, 1m30s, 500ms)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def format_time(t: datetime) -> str:
    """Go's ``time.RFC3339Nano`` for a UTC time: trailing zeros of the fraction dropped, ``Z``."""
    text = t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += f".{t.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_time(text: str) -> datetime | None:
    """An annotation's time, or None when missing or malformed (Go ignores the parse error)."""
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class RegistrationError(Exception):
    """Why a connecting proxy is refused; ``code`` is the gRPC status the stream ends with."""

    def __init__(self, message: str, code: str = "UNKNOWN"):
        super().__init__(message)
        self.code = code


def auto_registered_entry_name(proxy: Proxy) -> str:
    """``autoregisteredWorkloadEntryName``: ``<group>-<ip>[-<network>]``, at most 253 characters
    (cut from the front). "" when the proxy names no group or no namespace."""
    group = proxy.metadata.get("AUTO_REGISTER_GROUP") or ""
    if not group:
        return ""
    if not proxy.metadata.get("NAMESPACE"):
        log.error("auto-registration of %s failed: missing namespace", proxy.id)
        return ""
    parts = [group, proxy.ip_addresses[0].replace(":", "-")]
    if proxy.metadata.get("NETWORK"):
        parts.append(proxy.metadata["NETWORK"])
    name = "-".join(parts)
    if len(name) > MAX_NAME:
        name = name[-MAX_NAME:]
        log.warning("generated WorkloadEntry name is too long, shortened from the start to %s", name)
    return name


def merge_labels(*maps: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in maps:
        out.update(m or {})
    return out


def workload_entry_from_group(name: str, proxy: Proxy, group: Config) -> Config:
    """``workloadEntryFromGroup``: the WorkloadEntry a connecting proxy gets from its group."""
    spec = group.spec or {}
    entry = copy.deepcopy(spec.get("template") or {})
    entry["address"] = proxy.ip_addresses[0]
    group_meta = spec.get("metadata") or {}
    labels = dict(entry.get("labels") or {})
    if group_meta.get("labels"):
        labels = merge_labels(labels, group_meta["labels"])
    if "LABELS" in proxy.metadata:  # the node's labels, not proxy.labels (computed after this)
        labels = merge_labels(labels, proxy.metadata["LABELS"])
        labels.pop(LOCALITY_LABEL, None)  # "region/zone" is not a valid label value; locality has it
    if labels:
        entry["labels"] = labels
    annotations = merge_labels({AUTO_REGISTRATION_GROUP: group.name}, group_meta.get("annotations"))
    if proxy.metadata.get("NETWORK"):
        entry["network"] = proxy.metadata["NETWORK"]
    if ((proxy.metadata.get("PROXY_CONFIG") or {}).get("readinessProbe")) is not None:
        annotations[HEALTH_CHECKS_ENABLED] = "true"
    return Config(
        kind="WorkloadEntry", group="networking.istio.io", version="v1alpha3",  # gvk.WorkloadEntry
        name=name, namespace=proxy.metadata["NAMESPACE"], spec=entry, labels=dict(labels),
        annotations=annotations, domain=group.domain,
        owner_references=[{"apiVersion": "networking.istio.io/v1alpha3", "kind": "WorkloadGroup",  # gvk.WorkloadGroup
                           "name": group.name, "uid": group.uid, "controller": True}],
    )


def is_auto_registered(entry: Config | None) -> bool:
    return entry is not None and bool(entry.annotations.get(AUTO_REGISTRATION_GROUP))


def is_health_checked(entry: Config | None) -> bool:
    return entry is not None and bool(entry.annotations.get(WORKLOAD_CONTROLLER)) and not is_auto_registered(entry)


def proxy_key(proxy: Proxy) -> str:
    """``makeProxyKey``: connections of one workload, counted together."""
    return "~".join([proxy.metadata.get("NETWORK") or "", proxy.ip_addresses[0], proxy.workload_entry_name,
                     proxy.metadata.get("NAMESPACE") or ""])


class WorkloadEntryController:
    """Register connecting VM proxies as WorkloadEntries in ``store`` (a writable config store:
    ``get``, ``list``, ``create``, ``update``, ``delete``); timers on ``clock``."""

    def __init__(self, store, clock: Clock, instance_id: str = "", max_connection_age: float = math.inf,
                 features: Features | None = None):
        self.store = store
        self.clock = clock
        self.instance_id = instance_id  # istiod's pod name (POD_NAME)
        self.features = features or Features.from_env()
        self.max_connection_age = max_connection_age * 1.5  # NewController: age + age/2
        self.ads_connections: dict[str, int] = {}
        # Wall time of clock instant 0: the trace's epoch on a virtual clock, else now.
        self._epoch = EPOCH if isinstance(clock, VirtualClock) else datetime.now(UTC) - timedelta(seconds=clock.now())
        self._periodic = None
        self.registered = self.updated = self.unregistered = self.deleted = self.errors = 0  # Go's counters

    @property
    def enabled(self) -> bool:
        return self.features.auto_registration or self.features.health_checks

    def now(self) -> datetime:
        return self._epoch + timedelta(seconds=self.clock.now())

    # -- connect ------------------------------------------------------------------------------
    def register_workload(self, proxy: Proxy, con_time: datetime) -> None:
        """``RegisterWorkload``: raise RegistrationError when the proxy must be refused."""
        if not self.enabled:
            return
        entry_name, auto_create = "", False
        if self.features.auto_registration and proxy.metadata.get("AUTO_REGISTER_GROUP"):
            entry_name, auto_create = auto_registered_entry_name(proxy), True
        elif self.features.health_checks and proxy.metadata.get("WORKLOAD_ENTRY"):
            namespace = proxy.metadata.get("NAMESPACE") or ""
            entry = self.store.get("WorkloadEntry", proxy.metadata["WORKLOAD_ENTRY"], namespace)
            if entry is None:
                raise RegistrationError(
                    "proxy metadata indicates that it must correspond to an existing WorkloadEntry, however "
                    f"WorkloadEntry {namespace}/{proxy.metadata['WORKLOAD_ENTRY']} is not found")
            if HEALTH_CHECKS_ENABLED in entry.annotations:
                self._ensure_proxy_can_control(proxy, entry)
                entry_name = entry.name
        if not entry_name:
            return
        proxy.workload_entry_name, proxy.workload_entry_auto_created = entry_name, auto_create
        key = proxy_key(proxy)
        self.ads_connections[key] = self.ads_connections.get(key, 0) + 1
        try:
            if auto_create:
                self._register(entry_name, proxy, con_time)
            else:
                self._become_controller_of(entry_name, proxy, con_time)
        except RegistrationError as err:
            log.error("%s", err)
            raise

    def _ensure_proxy_can_control(self, proxy: Proxy, entry: Config) -> None:
        if not self.features.validate_identity:
            return
        if proxy.verified_identity is None:
            raise RegistrationError("registration of WorkloadEntry requires a verified identity")
        namespace, service_account = proxy.verified_identity
        if namespace != entry.namespace:
            raise RegistrationError(
                f"registration of WorkloadEntry namespace mismatch: {namespace!r} vs {entry.namespace!r}")
        wanted = (entry.spec or {}).get("serviceAccount") or ""
        if wanted and service_account != wanted:
            raise RegistrationError(
                f"registration of WorkloadEntry service account mismatch: {service_account!r} vs {wanted!r}")

    def _register(self, entry_name: str, proxy: Proxy, con_time: datetime) -> None:
        """``registerWorkload``: mark the existing entry connected, or create it from the group."""
        namespace = proxy.metadata["NAMESPACE"]
        existing = self.store.get("WorkloadEntry", entry_name, namespace)
        if existing is not None:
            self._ensure_proxy_can_control(proxy, existing)
            if self._mark_connected(existing, con_time):
                self.updated += 1
                log.info("updated auto-registered WorkloadEntry %s/%s", namespace, entry_name)
            return
        group_name = proxy.metadata["AUTO_REGISTER_GROUP"]
        group = self.store.get("WorkloadGroup", group_name, namespace)
        if group is None:
            self.errors += 1
            raise RegistrationError(f"auto-registration WorkloadEntry of {proxy.id} failed: cannot find "
                                    f"WorkloadGroup {namespace}/{group_name}", "FAILED_PRECONDITION")
        entry = workload_entry_from_group(entry_name, proxy, group)
        self._ensure_proxy_can_control(proxy, entry)
        self._set_connect_meta(entry, con_time)
        try:
            self.store.create(entry)
        except Exception as err:  # the kube client's conflict, admission denial, ...
            self.errors += 1
            raise RegistrationError(f"auto-registration WorkloadEntry of {proxy.id} failed: "
                                    f"error creating WorkloadEntry: {err}") from err
        self.registered += 1
        log.info("auto-registered WorkloadEntry %s/%s%s", namespace, entry_name,
                 " with health checking enabled" if HEALTH_CHECKS_ENABLED in entry.annotations else "")
        self._arm_periodic()

    def _become_controller_of(self, entry_name: str, proxy: Proxy, con_time: datetime) -> None:
        entry = self.store.get("WorkloadEntry", entry_name, proxy.metadata.get("NAMESPACE") or "")
        if entry is None:
            raise RegistrationError(f"failed updating WorkloadEntry {entry_name}: WorkloadEntry not found")
        if self._mark_connected(entry, con_time):
            log.info("updated health-checked WorkloadEntry %s/%s", entry.namespace, entry_name)
            self._arm_periodic()

    def _set_connect_meta(self, entry: Config, con_time: datetime) -> None:
        entry.annotations[WORKLOAD_CONTROLLER] = self.instance_id
        entry.annotations[CONNECTED_AT] = format_time(con_time)
        entry.annotations.pop(DISCONNECTED_AT, None)

    def _mark_connected(self, entry: Config, con_time: datetime) -> bool:
        """``changeWorkloadEntryStateToConnected``: False when a newer connection stamped it."""
        last = parse_time(entry.annotations.get(CONNECTED_AT, ""))
        if last is not None and con_time < last:  # the proxy has since connected to another istiod
            return False
        updated = copy.deepcopy(entry)
        self._set_connect_meta(updated, con_time)
        self.store.update(updated)
        return True

    # -- disconnect ---------------------------------------------------------------------------
    def queue_unregister_workload(self, proxy: Proxy, orig_connect: datetime) -> None:
        """``QueueUnregisterWorkload`` (and, at once, the queue's ``unregisterWorkload``)."""
        if not self.enabled or not proxy.workload_entry_name:
            return
        key = proxy_key(proxy)
        count = self.ads_connections.get(key, 0)
        if count > 1:  # another stream of the same workload is still open
            self.ads_connections[key] = count - 1
            return
        self.ads_connections.pop(key, None)
        try:
            changed = self._mark_disconnected(proxy, self.now(), orig_connect)
        except RegistrationError as err:
            self.errors += 1
            log.info("%s", err)
            return
        if not changed:
            return
        if proxy.workload_entry_auto_created:
            self.unregistered += 1
        namespace, name = proxy.metadata.get("NAMESPACE") or "", proxy.workload_entry_name
        self.clock.call_later(self.features.grace_period, lambda: self._cleanup_after_grace(name, namespace))

    def _mark_disconnected(self, proxy: Proxy, discon_time: datetime, orig_connect: datetime) -> bool:
        """``changeWorkloadEntryStateToDisconnected``: stamp ``disconnectedAt`` unless the entry
        now belongs to a later connection or to another istiod."""
        namespace, name = proxy.metadata.get("NAMESPACE") or "", proxy.workload_entry_name
        entry = self.store.get("WorkloadEntry", name, namespace)
        if entry is None:
            raise RegistrationError(f"workloadentry {namespace}/{name} is not found")
        connected = parse_time(entry.annotations.get(CONNECTED_AT, ""))
        if connected is not None and connected > orig_connect:  # we reconnected before this ran
            return False
        if entry.annotations.get(WORKLOAD_CONTROLLER) != self.instance_id:  # another istiod has it
            return False
        if connected is not None and discon_time < connected:
            return False
        updated = copy.deepcopy(entry)
        updated.annotations.pop(CONNECTED_AT, None)
        updated.annotations[DISCONNECTED_AT] = format_time(discon_time)
        self.store.update(updated)
        return True

    # -- cleanup ------------------------------------------------------------------------------
    def _cleanup_after_grace(self, name: str, namespace: str) -> None:
        entry = self.store.get("WorkloadEntry", name, namespace)
        if entry is not None and self.should_cleanup(entry):
            self._cleanup(entry, periodic=False)

    def should_cleanup(self, entry: Config) -> bool:
        """``shouldCleanupEntry``: an auto-registered (or health-checked, with a health condition)
        entry whose proxy left more than a grace period ago, or "connected" for too long."""
        if not is_auto_registered(entry):
            return False  # health-checked entries need a health condition, which mesh never writes
        connected_text = entry.annotations.get(CONNECTED_AT, "")
        if connected_text:
            connected = parse_time(connected_text)
            return connected is not None and (self.now() - connected).total_seconds() > self.max_connection_age
        disconnected_text = entry.annotations.get(DISCONNECTED_AT, "")
        if not disconnected_text:
            return False
        disconnected = parse_time(disconnected_text)
        return not (disconnected is not None
                    and (self.now() - disconnected).total_seconds() < self.features.grace_period)

    def _cleanup(self, entry: Config, periodic: bool) -> None:
        """``cleanupEntry`` → ``deleteEntry`` for an auto-registered entry."""
        if not is_auto_registered(entry):
            return
        try:
            self.store.delete("WorkloadEntry", entry.name, entry.namespace)
        except KeyError:  # already gone (NotFound is not an error)
            pass
        self.deleted += 1
        log.info("cleaned up auto-registered WorkloadEntry %s/%s periodic:%s", entry.namespace, entry.name,
                 str(periodic).lower())

    def periodic_cleanup(self) -> int:
        """One tick of ``periodicWorkloadEntryCleanup``: clean every entry that should be; returns how many."""
        due = [e for e in self.store.list("WorkloadEntry") if self.should_cleanup(e)]
        for entry in due:
            self._cleanup(entry, periodic=True)
        return len(due)

    def run(self) -> None:
        """``Run``: start the periodic scan if the store already holds entries to watch (a restarted
        istiod finds the entries an earlier one registered)."""
        if self.enabled and any(is_auto_registered(e) or is_health_checked(e) for e in self.store.list("WorkloadEntry")):
            self._arm_periodic()

    def _arm_periodic(self) -> None:
        if self._periodic is None and self.features.grace_period > 0:
            self._periodic = self.clock.call_later(10 * self.features.grace_period, self._tick)

    def _tick(self) -> None:
        self._periodic = None
        self.periodic_cleanup()
        if any(is_auto_registered(e) or is_health_checked(e) for e in self.store.list("WorkloadEntry")):
            self._arm_periodic()

    def stop(self) -> None:
        if self._periodic is not None:
            self._periodic.cancel()
            self._periodic = None
