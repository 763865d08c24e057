"""mesh's packages import one way, in Istio's order (DESIGN.md §3), and no module imports another's
private names.

Every module under ``mesh/`` is parsed with ``ast`` and every import is read, function-local and
``TYPE_CHECKING`` ones too: an arrow from a package to one of the same or a higher layer fails,
naming the file and line. The checker is also run on a synthetic module tree with a planted upward
import, so this test can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MESH = Path(__file__).resolve().parent.parent / "mesh"

# Layer of each top-level package or module of mesh (higher imports lower, never the reverse, and
# packages of one layer do not import each other). Istio's name for each is in the comment.
LAYERS: dict[str, int] = {
    # leaves everything may use
    "": 0,  # mesh/__init__.py: ISTIO_SOURCE and the package docstring
    "clock": 0,  # mesh's own: the virtual and the real clock
    "util": 0,  # small helpers (addresses, aiohttp serving), no Istio counterpart
    "kube": 1,  # pkg/kube: clients, informers, traces (and the trace API server)
    "iptables": 1,  # tools/istio-iptables: istio-init's rules, a separate binary that imports no other mesh package
    "cni": 2,  # mesh's own: kubelet + a CNI bridge plugin (pods as network namespaces), over iptables
    "config": 2,  # pkg/config: mesh, meshnetworks, host, validation
    "trustbundle": 2,  # pilot/pkg/trustbundle: held by the model's Environment, so below it
    "model": 3,  # pilot/pkg/model
    "networking": 4,  # pilot/pkg/networking/core/v1alpha3
    "serviceregistry": 4,  # pilot/pkg/serviceregistry
    "autoregistration": 4,  # pilot/pkg/autoregistration: WorkloadEntries for connecting VMs, over the model
    "configcontroller": 4,  # pilot/pkg/config/{kube/crdclient,kube/ingress,kube/gateway,aggregate,file}
    "xds": 5,  # pilot/pkg/xds
    "inject": 5,  # pkg/kube/inject
    "webhooks": 5,  # pkg/webhooks/validation
    "security": 5,  # security/pkg (CA, CSR service, istiod's certificate)
    "bootstrap": 6,  # pilot/pkg/bootstrap
    "agent": 6,  # pilot/cmd/pilot-agent, pkg/istio-agent: a separate binary over xds and security
    "install": 6,  # operator/, manifests/, istioctl install: renders with inject's templates
    "demo": 7,  # mesh's own: serve plus pods, apps and Envoys (over bootstrap and agent)
    "tools": 7,  # mesh's own: diagrams, notebook runner, replay's text rows (over bootstrap and xds), for cli and teach
    "cli": 8,  # pilot/cmd/pilot-discovery, istioctl
    "__main__": 9,  # python -m mesh
    "teach": 9,  # display helpers for the notebooks only: nothing in mesh imports them
    "traces": 0,  # data files (the package holds no code)
}

# Arrows against the order that are known exceptions (none today); each must still exist (so the list
# shrinks as they go) and no other may appear.
ALLOWED: dict[tuple[str, str], str] = {}

# Private names imported across modules that are known exceptions (none today: keep it so).
ALLOWED_PRIVATE: set[tuple[str, str]] = set()


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(root: Path):
    """(module, imported module, imported name or None, file, line) for every import under ``root``."""
    for path in sorted(root.rglob("*.py")):
        mod = module_name(root, path)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield mod, alias.name, None, path, node.lineno
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    yield mod, target, alias.name, path, node.lineno


def top(module: str, root_name: str) -> str | None:
    """The top-level package of a module of ``root_name`` ("" for the root itself), else None."""
    parts = module.split(".")
    if parts[0] != root_name:
        return None
    return parts[1] if len(parts) > 1 else ""


def violations(root: Path, layers: dict[str, int], allowed=()) -> list[str]:
    found = []
    for mod, target, name, path, line in imports(root):
        src, dst = top(mod, root.name), top(target, root.name)
        if dst is None or src == dst:
            continue
        if dst == "" and name in layers:  # `from mesh import bootstrap`: the arrow goes to mesh.bootstrap
            dst, target = name, f"{target}.{name}"
            if src == dst:
                continue
        if src not in layers or dst not in layers:
            found.append(f"{path}:{line}: {mod} or {target} has no layer in LAYERS")
        elif layers[src] <= layers[dst] and (mod, target) not in allowed:
            found.append(f"{path}:{line}: {mod} (layer {layers[src]}: {src}) imports {target} "
                         f"(layer {layers[dst]}: {dst}) — arrows point down only")
    return found


def private_imports(root: Path) -> list[tuple[str, str, Path, int]]:
    """``from other import _name`` across modules (a module's own package re-exports aside)."""
    return [(mod, f"{target}.{name}", path, line) for mod, target, name, path, line in imports(root)
            if name and name.startswith("_") and not name.startswith("__") and target != mod]


def test_every_package_of_mesh_has_a_layer():
    packages = {p.stem if p.is_file() else p.name for p in MESH.iterdir()
                if (p.is_dir() and not p.name.startswith("__")) or (p.suffix == ".py")}
    packages = {"" if p == "__init__" else p for p in packages}
    assert packages <= set(LAYERS), sorted(packages - set(LAYERS))


def test_mesh_imports_point_down_istios_layers():
    assert violations(MESH, LAYERS, ALLOWED) == []


def test_the_allowed_exceptions_still_exist():
    arrows = {(mod, target) for mod, target, _name, _path, _line in imports(MESH)}
    assert set(ALLOWED) <= arrows, sorted(set(ALLOWED) - arrows)  # drop an entry once it is fixed


def test_config_and_model_do_not_import_each_other():
    arrows = {(top(m, "mesh"), top(t, "mesh")) for m, t, _n, _p, _l in imports(MESH)}
    assert ("config", "model") not in arrows
    assert ("model", "security") not in arrows  # the trust bundle moved below the model


def test_no_module_imports_another_modules_private_names():
    found = [(mod, name) for mod, name, _path, _line in private_imports(MESH)]
    assert [f for f in found if f not in ALLOWED_PRIVATE] == []
    assert ALLOWED_PRIVATE <= set(found)


def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "mesh"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_checker_fails_on_a_planted_upward_import(tmp_path):
    root = plant(tmp_path, {
        "__init__.py": "",
        "config/__init__.py": "",
        "config/mesh.py": "def defaults():\n    from mesh.model.environment import Environment\n    return Environment\n",
        "model/__init__.py": "",
        "model/environment.py": "from mesh.config.mesh import defaults\n",
        "xds/__init__.py": "",
        "xds/ads.py": "from ..bootstrap import server\n",  # relative, upward too
        "config/host.py": "from mesh import bootstrap\n",  # a package named in `from mesh import`
        "bootstrap/__init__.py": "",
        "bootstrap/server.py": "from mesh.xds import ads\nfrom mesh import model\n",
    })
    found = violations(root, LAYERS)
    assert len(found) == 3, found
    assert "config/host.py:1: mesh.config.host (layer 2: config) imports mesh.bootstrap" in found[0]
    assert "config/mesh.py:2: mesh.config.mesh (layer 2: config) imports mesh.model.environment" in found[1]
    assert "xds/ads.py:1: mesh.xds.ads (layer 5: xds) imports mesh.bootstrap" in found[2]
    assert violations(root, LAYERS, {("mesh.config.host", "mesh.bootstrap"),
                                     ("mesh.config.mesh", "mesh.model.environment"),
                                     ("mesh.xds.ads", "mesh.bootstrap")}) == []


def test_the_checker_refuses_peers_and_packages_without_a_layer(tmp_path):
    root = plant(tmp_path, {
        "__init__.py": "",
        "xds/__init__.py": "import mesh.inject.webhook\n",  # a peer of the same layer
        "inject/__init__.py": "",
        "inject/webhook.py": "",
        "newthing/__init__.py": "from mesh.kube import client\n",
    })
    found = violations(root, LAYERS)
    assert any("mesh.xds (layer 5: xds) imports mesh.inject.webhook" in f for f in found), found
    assert any("has no layer in LAYERS" in f for f in found), found


def test_the_private_name_check_sees_a_planted_one(tmp_path):
    root = plant(tmp_path, {"__init__.py": "", "kube/__init__.py": "",
                            "kube/client.py": "def _hidden():\n    pass\n",
                            "kube/live.py": "from mesh.kube.client import _hidden\n"})
    assert [(m, n) for m, n, _p, _l in private_imports(root)] == [("mesh.kube.live", "mesh.kube.client._hidden")]


@pytest.mark.parametrize("name", sorted(n for n in LAYERS if n))
def test_layer_table_names_real_packages(name):
    assert (MESH / name).is_dir() or (MESH / f"{name}.py").is_file(), name
