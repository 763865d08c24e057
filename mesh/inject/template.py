"""Injection templates: Jinja2 in place of Go's ``text/template`` + sprig, with the same helpers.

Go: the data a template sees, ``SidecarTemplateData``
https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/inject.go#L95-L107, the helper functions
https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/template.go#L38-L66 and the proxy-config
trimming ``cleanProxyConfig`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/template.go#L283-L342.

A template renders to YAML: a partial Pod (``metadata`` + ``spec``) that is then merged into the
real pod (``mesh/inject/merge.py``). The names a template sees are the Go field names in
snake_case:

=================  ================================================================
``object_meta``    the pod's metadata (``labels`` and ``annotations`` always present)
``spec``           the pod's spec (``containers`` always present)
``deployment_meta`` metadata of the owning workload (Deployment name, namespace...)
``type_meta``      ``{"apiVersion", "kind"}`` of that workload
``proxy_config``   the ProxyConfig (mesh ``defaultConfig`` + pod annotation), camelCase
``mesh_config``    the MeshConfig, camelCase
``values``         the Helm values from the ConfigMap
``revision``       the control plane revision ("" for default)
``proxy_image``    hub/proxyv2:tag, computed as ``ProxyImage`` does
=================  ================================================================

Templates come from a ConfigMap, so they run in Jinja's sandbox. A missing value (say
``values.global.proxy.lifecycle``) is empty and falsy, as ``<no value>`` is in Go templates.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment

from mesh.config.mesh import default_proxy_config
from mesh.util.toyaml import to_yaml


class InjectionTemplateError(ValueError):
    """A template that failed to render or did not produce a YAML mapping."""


# -- helpers a template can call (template.go's FuncMap) -----------------------------------------
def annotation(meta: Mapping, name: str, default: object = "") -> str:
    """The pod's annotation ``name``, else ``default`` (``getAnnotation``)."""
    annotations = (meta or {}).get("annotations") or {}
    if name in annotations:
        return annotations[name]
    return "" if default is None or isinstance(default, jinja2.Undefined) else _go_string(default)


def isset(m: Mapping | None, key: str) -> bool:
    return key in (m or {})


def value_or_default(value: object, default: object) -> object:
    if value is None or value == "" or isinstance(value, jinja2.Undefined):
        return default
    return value


def exclude_inbound_port(port: object, excluded: str) -> str:
    """Add the status port to the excluded inbound ports unless it is there or is 0."""
    port_str = _go_string(port).strip()
    if not port_str or port_str == "0":
        return excluded
    ports = [p.strip() for p in (excluded or "").split(",")]
    if port_str in ports:
        return excluded
    return ",".join([p for p in ports if p] + [port_str])


def to_json(value: object) -> str:
    """Compact JSON, never HTML-escaped (Jinja's own ``tojson`` escapes ``<``, ``>``, ``&``)."""
    if isinstance(value, jinja2.Undefined) or value is None:
        return "{}"
    return json.dumps(value, separators=(",", ":"))


def from_json(text: str) -> object:
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return {}


def indent(text: str, spaces: int) -> str:
    """Indent every line but the first (Go's ``indent`` in template.go; used after a key)."""
    lines = str(text).split("\n")
    return "\n".join([lines[0]] + [" " * spaces + line for line in lines[1:]])


def quote(value: object) -> str:
    """sprig's ``quote``: a double-quoted string (valid YAML and JSON)."""
    return json.dumps("" if isinstance(value, jinja2.Undefined) or value is None else _go_string(value))


def getenv(key: str, default: str = "") -> str:
    """istiod's environment variable ``key``, else ``default`` (template.go's ``env``): how the
    sidecar template sees ``ENABLE_NATIVE_SIDECARS``."""
    return os.environ.get(key) or default


def append_multus_network(existing: str, network: str) -> str:
    """``appendMultusNetwork``: add ``network`` to a ``k8s.v1.cni.cncf.io/networks`` value, which is
    either a comma-separated list or a JSON list of ``{"name": ...}`` (kept as text, the new entry
    spliced in before the closing bracket, as Go does). Already there: unchanged.

    https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/template.go#L183-L210
    """
    if isinstance(existing, jinja2.Undefined) or not existing:
        return network
    end = existing.rfind("]")
    if end != -1:
        try:
            networks = json.loads(existing)
        except json.JSONDecodeError:
            return existing  # not JSON after all: leave it as the user wrote it
        if any(isinstance(n, dict) and n.get("name") == network for n in networks):
            return existing
        return existing[:end] + f', {{"name": "{network}"}}' + existing[end:]
    if network in (n.strip() for n in existing.split(",")):
        return existing
    return f"{existing}, {network}"


def directory(path: str) -> str:
    head, _ = posixpath.split(path)
    return head + "/" if head else ""


# Fields cleanProxyConfig drops when they equal the defaults, so PROXY_CONFIG stays small.
_CLEANED_PROXY_FIELDS = ("configPath", "binaryPath", "controlPlaneAuthPolicy", "serviceCluster",
                         "drainDuration", "terminationDrainDuration", "discoveryAddress",
                         "envoyMetricsService", "envoyAccessLogService", "tracing", "proxyAdminPort",
                         "statNameLength", "statusPort", "concurrency")


def clean_proxy_config(proxy_config: Mapping | None) -> dict:
    defaults = default_proxy_config()
    cleaned = {}
    for key, value in (proxy_config or {}).items():
        if key in _CLEANED_PROXY_FIELDS and key in defaults and defaults[key] == value:
            continue
        if key == "proxyMetadata" and not value:
            continue
        cleaned[key] = value
    return cleaned


def proxy_config_json(proxy_config: Mapping | None) -> str:
    """``protoToJSON .ProxyConfig``: the ProxyConfig minus defaults, as compact JSON."""
    return json.dumps(clean_proxy_config(proxy_config), separators=(",", ":"))


def pod_ports_json(containers: list | None) -> str:
    """``ISTIO_META_POD_PORTS``: every container port as JSON, in the Go field order."""
    order = ("name", "hostPort", "containerPort", "protocol", "hostIP")
    ports = []
    for container in containers or []:
        for port in container.get("ports") or []:
            ports.append(json.dumps({k: port[k] for k in order if port.get(k) not in (None, "", 0)},
                                    separators=(",", ":")))
    if not ports:
        return "[\n]"
    return "[\n    " + "\n    ,".join(ports) + "\n]"


def _go_string(value: object) -> str:
    """``fmt.Sprint`` for the scalars templates use: booleans print as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def proxy_image(values: Mapping, proxy_config: Mapping, annotations: Mapping) -> str:
    """``ProxyImage``: hub/image:tag, with ``-distroless``/``-debug`` from the image type.

    https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/inject.go#L299-L356
    """
    glob = (values or {}).get("global") or {}
    tag = _go_string(glob.get("tag", ""))
    image_name = ((glob.get("proxy") or {}).get("image")) or "proxyv2"
    image_type = ((proxy_config or {}).get("image") or {}).get("imageType", "")
    image_type = (annotations or {}).get("sidecar.istio.io/proxyImageType", image_type)
    if image_type:
        for known in ("distroless", "debug"):
            if tag.endswith("-" + known):
                tag = tag[: -len(known) - 1]
                break
        if image_type != "default":
            tag = f"{tag}-{image_type}"
    return f"{glob.get('hub', '')}/{image_name}:{tag}"


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,  # a block tag's own newline is dropped: templates read like the YAML they make
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.globals.update(
        annotation=annotation, isset=isset, value_or_default=value_or_default,
        exclude_inbound_port=exclude_inbound_port, to_json=to_json, from_json=from_json,
        proxy_config_json=proxy_config_json, pod_ports_json=pod_ports_json, directory=directory,
        env=getenv, append_multus_network=append_multus_network,
    )
    env.filters.update(to_json=to_json, to_yaml=to_yaml, indent_rest=indent, quote=quote)
    return env


_ENV = _environment()
# libyaml's loader when PyYAML was built with it: parsing the rendered YAML is most of the cost
# of an injection, and the C loader is ~10x faster than the pure-Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def compile_templates(raw: Mapping[str, str]) -> dict[str, jinja2.Template]:
    """Compile every template; a syntax error raises ``jinja2.TemplateSyntaxError`` with ``name`` set."""
    compiled = {}
    for name, text in raw.items():
        try:
            compiled[name] = _ENV.from_string(text)
        except jinja2.TemplateSyntaxError as err:
            err.name = name
            raise
        compiled[name].name = name
    return compiled


def render(template: jinja2.Template, data: Mapping) -> tuple[str, dict]:
    """Run one template; returns its YAML text and the parsed partial pod."""
    name = getattr(template, "name", "?")
    try:
        text = template.render(**data)
    except jinja2.TemplateError as err:
        raise InjectionTemplateError(f"template {name!r}: {err}") from err
    try:
        overlay = yaml.load(text, Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as err:
        raise InjectionTemplateError(f"template {name!r} rendered invalid YAML: {err}") from err
    if not isinstance(overlay, dict):
        raise InjectionTemplateError(f"template {name!r} must render a mapping (metadata/spec), "
                                     f"got {type(overlay).__name__}")
    return text, overlay
