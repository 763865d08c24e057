"""istio/istio's Go packages → mesh's modules: the one map the README, the diagram and notebook 00 show.

No Go counterpart: this is the reader's map from one source tree to the other (DESIGN.md §3). Each
row is ``(Go package, mesh module, what it holds)``. ``diagrams/package-map.svg`` is drawn from it
(``mesh.tools.diagrams``), notebook 00 prints it (``mesh.teach.views.package_map_table``), and
README's "Package map" section is this table rendered by ``markdown()`` between two markers —
``python -m mesh diagrams --readme README.md`` rewrites it and ``tests/test_packagemap.py`` fails
when the two differ, so the map is written once.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

PACKAGE_MAP: tuple[tuple[str, str, str], ...] = (
    ("pilot/cmd/pilot-discovery", "mesh.cli", "the command line (serve, replay, proxy-status, ...)"),
    ("pilot/pkg/bootstrap", "mesh.bootstrap", "NewServer's stages, one module per Go file"),
    ("pkg/kube", "mesh.kube", "clients, informers, traces and the trace API server"),
    ("pkg/config/mesh", "mesh.config.mesh", "MeshConfig defaults, merge and watch"),
    ("pkg/config/protocol", "mesh.config.protocol", "protocol.Parse and its predicates"),
    ("pkg/config/host", "mesh.config.host", "host names and wildcard matching"),
    ("pkg/config/validation", "mesh.config.validation", "istiod's verdicts on Istio config"),
    ("pilot/pkg/trustbundle", "mesh.trustbundle", "the workload trust bundle"),
    ("pilot/pkg/model", "mesh.model", "Environment, Service, Proxy, PushRequest, networks"),
    ("pilot/pkg/config/kube/crdclient", "mesh.configcontroller.crdclient", "Istio config from CRDs"),
    ("pilot/pkg/config/aggregate", "mesh.configcontroller.aggregate", "one store over many"),
    ("pilot/pkg/config/file", "mesh.configcontroller.filesource", "Istio config from files"),
    ("pilot/pkg/config/kube/ingress", "mesh.configcontroller.ingress", "Ingress → Gateway + VirtualService"),
    ("pilot/pkg/config/kube/gateway", "mesh.configcontroller.gateway_api", "Gateway API → Istio config"),
    ("pilot/pkg/serviceregistry", "mesh.serviceregistry", "Kubernetes and ServiceEntry registries"),
    ("pilot/pkg/networking/core/v1alpha3", "mesh.networking", "clusters, listeners, routes, endpoints"),
    ("pilot/pkg/xds", "mesh.xds", "ADS, debounce, generators, cache, debug"),
    ("security/pkg", "mesh.security", "the CA, CSR signing, istiod's certificate"),
    ("pkg/kube/inject", "mesh.inject", "sidecar injection: policy, templates, webhook"),
    ("pkg/webhooks/validation", "mesh.webhooks", "the validation webhook"),
    ("pkg/istio-agent", "mesh.agent", "pilot-agent: bootstrap, XDS proxy, SDS, Envoy"),
    ("tools/istio-iptables", "mesh.iptables", "istio-init: a pod's iptables capture rules"),
    ("operator", "mesh.install", "profiles, istioctl install, the operator loop"),
)

START, END = "<!-- package-map:start -->", "<!-- package-map:end -->"


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def markdown() -> str:
    """The map as README's table: each Go package linked at 1.19.0, each module linked to its path."""
    rows = ["| istio/istio (1.19.0) | mesh | what |", "|---|---|---|"]
    for go, py, what in PACKAGE_MAP:
        path = py.replace(".", "/")
        target = path if Path(__file__).resolve().parents[2].joinpath(path).is_dir() else path + ".py"
        rows.append(f"| [`{go}`](https://github.com/istio/istio/tree/1.19.0/{go}) | [`{py}`]({target}) | {what} |")
    return "\n".join(rows)


def update_readme(path: str | Path) -> bool:
    """Rewrite the table between the markers in ``path``; True when the file changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{path}: no {START} ... {END} section to rewrite")
    new = pattern.sub(lambda _: f"{START}\n{markdown()}\n{END}", text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text
