"""MeshConfig: Istio 1.19's defaults, the merge rules for user YAML, and the watchers.

Go: ``pkg/config/mesh`` —
defaults in https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/mesh.go#L38-L138,
the merge in ``ApplyMeshConfig`` https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/mesh.go#L183-L257,
the watcher that only calls handlers on a real change
https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/watcher.go#L184-L197, and the
ConfigMap watcher that keeps the last good config when the YAML is bad
https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/kubemesh/watcher.go#L30-L64.

A MeshConfig here is a plain dict with the camelCase keys users write in the ``istio``
ConfigMap (the proto's JSON names), so what a notebook prints is what a user would type.

Simplifications, named: fields are checked for name and basic type (int, string, bool,
duration, enum, list, object) rather than against the full proto schema; the ``SHARED_MESH_CONFIG``
multi-source mode is left out.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

from mesh.config.watcher import Watcher
from mesh.util import safeinput

log = logging.getLogger(__name__)

MESH_CONFIGMAP_NAME = "istio"  # istio-<revision> for a revisioned install
MESH_CONFIGMAP_KEY = "mesh"
NETWORKS_CONFIGMAP_KEY = "meshNetworks"
ISTIO_SYSTEM = "istio-system"


class MeshConfigError(ValueError):
    """Mesh config YAML that Istio would refuse; the message names the field."""


def default_proxy_config() -> dict:
    """``DefaultProxyConfig()`` in 1.19: what every proxy gets unless overridden."""
    return {
        "configPath": "./etc/istio/proxy",
        "binaryPath": "/usr/local/bin/envoy",
        "serviceCluster": "istio-proxy",
        "drainDuration": "45s",
        "terminationDrainDuration": "5s",
        "proxyAdminPort": 15000,
        "controlPlaneAuthPolicy": "MUTUAL_TLS",
        "discoveryAddress": "istiod.istio-system.svc:15012",
        "tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}},
        "statNameLength": 189,
        "statusPort": 15020,
    }


def default_mesh_config() -> dict:
    """``DefaultMeshConfig()`` in 1.19, key for key, in the same order."""
    return {
        "enableTracing": True,
        "accessLogFile": "",
        "accessLogEncoding": "TEXT",
        "accessLogFormat": "",
        "enableEnvoyAccessLogService": False,
        "protocolDetectionTimeout": "0s",
        "ingressService": "istio-ingressgateway",
        "ingressControllerMode": "STRICT",
        "ingressClass": "istio",
        "trustDomain": "cluster.local",
        "trustDomainAliases": [],
        "enableAutoMtls": True,
        "outboundTrafficPolicy": {"mode": "ALLOW_ANY"},
        "localityLbSetting": {"enabled": True},
        "certificates": [],
        "defaultConfig": default_proxy_config(),
        "rootNamespace": ISTIO_SYSTEM,
        "proxyListenPort": 15001,
        "proxyInboundListenPort": 15006,
        "connectTimeout": "10s",
        "defaultServiceExportTo": ["*"],
        "defaultVirtualServiceExportTo": ["*"],
        "defaultDestinationRuleExportTo": ["*"],
        "dnsRefreshRate": "60s",
        "serviceSettings": [],
        "enablePrometheusMerge": True,
        "defaultProviders": {},
        "extensionProviders": [
            {"name": "prometheus", "prometheus": {}},
            {"name": "stackdriver", "stackdriver": {}},
            {"name": "envoy", "envoyFileAccessLog": {"path": "/dev/stdout"}},
        ],
    }


# MeshConfig's fields in 1.19 (istio.io/api mesh/v1alpha1/config.proto), by JSON name → type.
_INT, _STR, _BOOL, _DUR, _OBJ, _LIST = "int", "string", "bool", "duration", "object", "list"
MESH_FIELDS: dict[str, str | tuple[str, ...]] = {
    "proxyListenPort": _INT, "proxyInboundListenPort": _INT, "proxyHttpPort": _INT,
    "connectTimeout": _DUR, "protocolDetectionTimeout": _DUR, "tcpKeepalive": _OBJ,
    "ingressClass": _STR, "ingressService": _STR,
    "ingressControllerMode": ("UNSPECIFIED", "OFF", "DEFAULT", "STRICT"),
    "ingressSelector": _STR, "enableTracing": _BOOL, "accessLogFile": _STR, "accessLogFormat": _STR,
    "accessLogEncoding": ("TEXT", "JSON"), "enableEnvoyAccessLogService": _BOOL,
    "disableEnvoyListenerLog": _BOOL, "defaultConfig": _OBJ, "outboundTrafficPolicy": _OBJ,
    "configSources": _LIST, "enableAutoMtls": _BOOL, "trustDomain": _STR, "trustDomainAliases": _LIST,
    "caCertificates": _LIST, "defaultServiceExportTo": _LIST, "defaultVirtualServiceExportTo": _LIST,
    "defaultDestinationRuleExportTo": _LIST, "rootNamespace": _STR, "localityLbSetting": _OBJ,
    "dnsRefreshRate": _DUR, "h2UpgradePolicy": ("DO_NOT_UPGRADE", "UPGRADE"),
    "inboundClusterStatName": _STR, "outboundClusterStatName": _STR, "certificates": _LIST,
    "serviceSettings": _LIST, "enablePrometheusMerge": _BOOL, "verifyCertificateAtClient": _BOOL,
    "ca": _OBJ, "extensionProviders": _LIST, "defaultProviders": _OBJ, "discoverySelectors": _LIST,
    "pathNormalization": _OBJ, "defaultHttpRetryPolicy": _OBJ, "meshMTLS": _OBJ, "tlsDefaults": _OBJ,
}
_DURATION = re.compile(r"^-?\d+(\.\d+)?s$")  # protobuf JSON durations are seconds: "10s", "0.5s"


def _check_field(name: str, value: object) -> None:
    expected = MESH_FIELDS.get(name)
    if expected is None:
        raise MeshConfigError(f"{name}: unknown field in MeshConfig")
    if value is None:
        return
    ok = {
        _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
        _STR: lambda v: isinstance(v, str),
        _BOOL: lambda v: isinstance(v, bool),
        _DUR: lambda v: isinstance(v, str) and bool(_DURATION.match(v)),
        _OBJ: lambda v: isinstance(v, dict),
        _LIST: lambda v: isinstance(v, list),
    }
    if isinstance(expected, tuple):
        if value not in expected:
            raise MeshConfigError(f"{name}: {value!r} is not one of {', '.join(expected)}")
    elif not ok[expected](value):
        hint = ' (a duration like "10s")' if expected == _DUR else ""
        raise MeshConfigError(f"{name}: expected {expected}{hint}, got {value!r}")


def parse_mesh_yaml(text: str) -> dict:
    """Parse the user's mesh YAML into a dict, checking field names and types."""
    try:
        data = safeinput.load_yaml(text, "mesh config") if text and text.strip() else {}
    except safeinput.InputError as err:
        raise MeshConfigError(err.message + (f" (line {err.line})" if err.line else "")) from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MeshConfigError(f"expected a mapping of MeshConfig fields, got {type(data).__name__}")
    for name, value in data.items():
        _check_field(str(name), value)
    return data


def apply_mesh_config(text: str, base: dict | None = None) -> dict:
    """``ApplyMeshConfig``: the user's YAML over ``base`` (default: Istio's defaults).

    Every top-level field the user sets replaces the default, except four that merge:
    ``defaultConfig`` merges field by field (and ``proxyMetadata`` key by key), so setting
    one proxy option does not wipe the rest; ``defaultProviders`` merges; ``extensionProviders``
    replace defaults of the same name and append new ones; ``trustDomainAliases`` are unioned
    and sorted.
    """
    user = parse_mesh_yaml(text)
    merged = copy.deepcopy(base) if base is not None else default_mesh_config()
    for name, value in user.items():
        if name == "defaultConfig":
            merged["defaultConfig"] = _merge_proxy_config(merged.get("defaultConfig") or {}, value or {})
        elif name == "defaultProviders":
            merged["defaultProviders"] = {**(merged.get("defaultProviders") or {}), **(value or {})}
        elif name == "extensionProviders":
            providers = list(merged.get("extensionProviders") or [])
            for provider in value or []:
                same = [i for i, p in enumerate(providers) if p.get("name") == provider.get("name")]
                if same:
                    providers[same[0]] = provider
                else:
                    providers.append(provider)
            merged["extensionProviders"] = providers
        elif name == "trustDomainAliases":
            merged[name] = sorted(set(merged.get(name) or []) | set(value or []))
        else:
            merged[name] = value
    if not merged.get("trustDomain"):
        raise MeshConfigError("trustDomain: must not be empty")
    return merged


def _merge_proxy_config(base: dict, overlay: dict) -> dict:
    merged = {**base, **overlay}
    if "proxyMetadata" in base or "proxyMetadata" in overlay:
        merged["proxyMetadata"] = {**(base.get("proxyMetadata") or {}), **(overlay.get("proxyMetadata") or {})}
    return merged


class MeshWatcher(Watcher):
    """Holds the current MeshConfig and calls handlers when it really changes
    (``mesh.Watcher``, one ``mesh.config.watcher.Watcher``). Bad input never replaces a good config."""

    what = "mesh config"
    error = MeshConfigError
    # Newest handler first, as istiod does: the first one registered (stage 4) requests the push,
    # and the later ones update what that push will read, so they must run before it
    # (https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/watcher.go#L198-L201).
    newest_handler_first = True

    def __init__(self, initial: dict | None = None, source: str = "defaults"):
        super().__init__(initial if initial is not None else default_mesh_config(), source)

    def parse(self, text: str) -> dict:
        return apply_mesh_config(text)

    def changed(self, value: dict) -> None:
        log.info("mesh configuration updated (trustDomain=%s)", value.get("trustDomain"))

    mesh = Watcher.current
    add_mesh_handler = Watcher.add_handler
    set_mesh = Watcher.set


def read_mesh_config_file(path: str | Path) -> dict:
    """``ReadMeshConfig``: a mesh config file merged over the defaults; errors name the file."""
    path = Path(path)
    try:
        return apply_mesh_config(safeinput.read_text(path))
    except safeinput.InputError as err:
        raise MeshConfigError(str(err)) from err
    except MeshConfigError as err:
        raise MeshConfigError(f"{path}: {err}") from err


def configmap_data(cm: dict | None, key: str) -> str | None:
    if cm is None:
        return None
    return (cm.get("data") or {}).get(key)
