"""The injector's configuration: the ``config`` and ``values`` of the ``istio-sidecar-injector``
ConfigMap, parsed, checked, and watched for changes.

Go: the ``Config`` struct https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/inject.go#L119-L154,
``UnmarshalConfig`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/inject.go#L160-L185,
the values https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L347-L361 and the
ConfigMap reader https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/watcher.go#L173-L192.

``config`` is YAML: the policy (``enabled``/``disabled``), the templates by name, the default
templates, aliases, the never/always label selectors and extra annotations. ``values`` is the
Helm values subset (``global``, ``istio_cni``, ``sidecarInjectorWebhook``, ``revision``) the
templates read, as JSON.

Where istiod's templates are Go ``text/template`` with sprig, mesh's are Jinja2 (see
``mesh/inject/template.py``); everything else in the ConfigMap means what it means in Istio.
Bad input never half-applies: a watcher keeps its last good configuration and records why the
new one was refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jinja2

from mesh.inject.template import compile_templates
from mesh.util import safeinput

log = logging.getLogger(__name__)

INJECTOR_CONFIGMAP_NAME = "istio-sidecar-injector"  # istio-sidecar-injector-<rev> for a revision
CONFIG_KEY = "config"
VALUES_KEY = "values"
SIDECAR_TEMPLATE = "sidecar"
POLICIES = ("enabled", "disabled")

# Where the bookinfo trace's ConfigMap comes from; also `mesh inject`'s default configuration.
BUILTIN_DIR = ("traces", "src", "istio-system")
BUILTIN_CONFIG = "injector-config.yaml"
BUILTIN_VALUES = "injector-values.json"


class InjectorConfigError(ValueError):
    """Injector config or values that cannot be used; the message names the source and field."""


@dataclass
class InjectorConfig:
    """``inject.Config``: policy, templates and selectors (templates already compiled)."""

    policy: str = "enabled"
    default_templates: list[str] = field(default_factory=lambda: [SIDECAR_TEMPLATE])
    raw_templates: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    never_inject_selector: list[dict] = field(default_factory=list)
    always_inject_selector: list[dict] = field(default_factory=list)
    injected_annotations: dict[str, str] = field(default_factory=dict)
    templates: dict[str, jinja2.Template] = field(default_factory=dict, repr=False, compare=False)


def injector_configmap_name(revision: str = "") -> str:
    return INJECTOR_CONFIGMAP_NAME if revision in ("", "default") else f"{INJECTOR_CONFIGMAP_NAME}-{revision}"


def parse_injector_config(text: str, origin: str = "<config>") -> InjectorConfig:
    """Parse the ``config`` YAML; raise InjectorConfigError naming ``origin`` and the field."""
    try:
        data = safeinput.load_yaml(text, origin) if text and text.strip() else {}
    except safeinput.InputError as err:
        raise InjectorConfigError(f"{origin}: {err.message}"
                                  + (f" (line {err.line})" if err.line else "")) from err
    data = data or {}
    if not isinstance(data, dict):
        raise InjectorConfigError(f"{origin}: expected a mapping, got {type(data).__name__}")

    def want(name: str, kind: type, default):
        value = data.get(name)
        if value is None:
            return default
        if not isinstance(value, kind):
            raise InjectorConfigError(f"{origin}: {name}: expected {kind.__name__}, got {type(value).__name__}")
        return value

    policy = want("policy", str, "enabled")
    if policy not in POLICIES:
        # istiod accepts the file and then refuses to inject anything; say so loudly.
        log.error("%s: policy %r is neither enabled nor disabled: auto-injection is off", origin, policy)
    templates = want("templates", dict, {})
    for name, body in templates.items():
        if not isinstance(body, str):
            raise InjectorConfigError(f"{origin}: templates.{name}: expected the template text, got "
                                      f"{type(body).__name__}")
    if not templates:
        log.warning("%s: no injection templates; pods will fail to inject", origin)
    selectors = {}
    for name in ("neverInjectSelector", "alwaysInjectSelector"):
        items = want(name, list, [])
        for i, item in enumerate(items):
            if not isinstance(item, dict) or set(item) - {"matchLabels", "matchExpressions"}:
                raise InjectorConfigError(f"{origin}: {name}[{i}]: expected a label selector "
                                          "(matchLabels / matchExpressions)")
        selectors[name] = items
    aliases = want("aliases", dict, {})
    for name, targets in aliases.items():
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise InjectorConfigError(f"{origin}: aliases.{name}: expected a list of template names")
    annotations = want("injectedAnnotations", dict, {})
    try:
        compiled = compile_templates(templates)
    except jinja2.TemplateSyntaxError as err:
        raise InjectorConfigError(f"{origin}: templates.{err.name}: line {err.lineno}: {err.message}") from err
    return InjectorConfig(
        policy=policy,
        default_templates=list(want("defaultTemplates", list, []) or [SIDECAR_TEMPLATE]),
        raw_templates=dict(templates),
        aliases={k: list(v) for k, v in aliases.items()},
        never_inject_selector=selectors["neverInjectSelector"],
        always_inject_selector=selectors["alwaysInjectSelector"],
        injected_annotations={str(k): str(v) for k, v in annotations.items()},
        templates=compiled,
    )


def parse_values(text: str, origin: str = "<values>") -> dict:
    """Parse ``values`` (JSON, as the Helm chart writes it; YAML is accepted too)."""
    if not text or not text.strip():
        return {}
    try:
        data = safeinput.parse_json(text, origin)
    except safeinput.InputError:
        try:
            data = safeinput.load_yaml(text, origin)
        except safeinput.InputError as err:
            raise InjectorConfigError(f"{origin}: invalid JSON/YAML: {err}") from err
    if not isinstance(data, dict):
        raise InjectorConfigError(f"{origin}: expected an object of Helm values, got {type(data).__name__}")
    return data


def load_files(config_path: str | Path, values_path: str | Path | None) -> tuple[InjectorConfig, dict]:
    """``loadConfig``: the injector config and values from two files (``--inject-config``, ``--values``)."""
    try:
        config_text = safeinput.read_text(config_path)
        values_text = safeinput.read_text(values_path) if values_path else ""
    except safeinput.InputError as err:
        raise InjectorConfigError(str(err)) from err
    return parse_injector_config(config_text, str(config_path)), parse_values(values_text, str(values_path))


def builtin_paths() -> tuple[Path, Path]:
    """The injector config and values the bookinfo trace installs (``traces/src/istio-system/``)."""
    folder = resources.files("mesh").joinpath(*BUILTIN_DIR)
    return Path(str(folder / BUILTIN_CONFIG)), Path(str(folder / BUILTIN_VALUES))


def load_builtin() -> tuple[InjectorConfig, dict]:
    config_path, values_path = builtin_paths()
    return load_files(config_path, values_path)


class InjectorConfigWatcher:
    """Holds the current (config, values) and tells handlers when a new good pair arrives.

    Fed by files once, or by the ConfigMap through an informer (``handle_configmap``) — the
    ``Watcher`` + ``WatcherMulticast`` of Go, without goroutines.
    """

    def __init__(self, config: InjectorConfig | None = None, values: dict | None = None, source: str = ""):
        self.config = config or InjectorConfig()
        self.values = values or {}
        self.source = source
        self.errors: list[str] = []
        self.generation = 0  # bumped on every accepted change
        self._handlers: list[Callable[[], object]] = []

    def add_handler(self, handler: Callable[[], object]) -> None:
        self._handlers.append(handler)

    def set(self, config: InjectorConfig, values: dict) -> None:
        self.config, self.values = config, values
        self.generation += 1
        for handler in list(self._handlers):
            handler()

    def handle_configmap(self, cm: dict | None) -> bool:
        """Apply a (new version of the) ConfigMap; returns True if it was accepted."""
        meta = (cm or {}).get("metadata") or {}
        origin = f"ConfigMap {meta.get('namespace', '?')}/{meta.get('name', '?')}"
        if cm is None:
            message = "injector ConfigMap deleted; keeping the last good injection config"
            log.warning("%s", message)
            self.errors.append(message)
            return False
        data = cm.get("data") or {}
        try:
            for key in (CONFIG_KEY, VALUES_KEY):
                if key not in data:
                    raise InjectorConfigError(f"{origin}: missing key {key!r}")
            config = parse_injector_config(data[CONFIG_KEY], f"{origin} key {CONFIG_KEY}")
            values = parse_values(data[VALUES_KEY], f"{origin} key {VALUES_KEY}")
        except InjectorConfigError as err:
            message = f"{err}; keeping the last good injection config"
            log.warning("%s", message)
            self.errors.append(message)
            return False
        if config == self.config and values == self.values:
            return False
        self.source = origin
        self.set(config, values)
        log.info("injection config updated from %s (policy=%s, templates=%s)", origin, config.policy,
                 ",".join(sorted(config.raw_templates)))
        return True
