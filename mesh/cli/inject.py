"""``python -m mesh inject -f FILE``: add the sidecar to workloads in YAML, like ``istioctl kube-inject``.

Go: ``istioctl kube-inject`` https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/kubeinject/kubeinject.go
running ``IntoResourceFile`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/inject.go#L546-L588.

The injector config and values default to the ones the bookinfo trace installs
(``traces/src/istio-system/``); the mesh config defaults to Istio's defaults. Pods, Deployments,
ReplicaSets, ReplicationControllers, StatefulSets, DaemonSets, Jobs, CronJobs and DeploymentConfigs
are injected, also inside a ``v1 List``; other documents are printed unchanged. Output is YAML
with sorted keys, one document per input document.
"""

from __future__ import annotations

import sys

import yaml

from mesh.cli import UsageError
from mesh.cli._documents import load_documents
from mesh.config.mesh import MeshConfigError, default_mesh_config, read_mesh_config_file
from mesh.inject.config import InjectorConfigError, builtin_paths, load_files
from mesh.inject.inject import InjectionError
from mesh.inject.kubeinject import KubeInjectError, into_object


def register(subparsers) -> None:
    p = subparsers.add_parser("inject", help="inject the istio-proxy sidecar into workloads in a YAML file",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("-f", "--filename", required=True, help="input YAML (- for stdin)")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.add_argument("--inject-config", help="injector config YAML (the ConfigMap's `config` key); "
                                           "default: the bookinfo trace's")
    p.add_argument("--values", help="injector values JSON (the ConfigMap's `values` key); "
                                    "default: the bookinfo trace's when --inject-config is not given")
    p.add_argument("--mesh-config", help="mesh config YAML (default: Istio's defaults)")
    p.add_argument("--revision", default="", help="control plane revision (default: none)")
    p.set_defaults(func=run)


def inject_text(documents, config, values, mesh_config, revision: str = "", warn=None) -> str:
    """The injected documents as one YAML stream."""
    out = []
    for doc in documents:
        try:
            injected = into_object(doc.obj, config, values, mesh_config, revision, warn or (lambda m: None))
        except (InjectionError, KubeInjectError) as err:
            raise UsageError(f"document {doc.index} (line {doc.line}, {doc.label}): {err}") from err
        out.append(yaml.safe_dump(injected, sort_keys=True, default_flow_style=False, width=1_000_000))
    return "---\n".join(out)


def run(args) -> int:
    try:
        if args.inject_config:
            config, values = load_files(args.inject_config, args.values)
        else:
            default_config, default_values = builtin_paths()
            config, values = load_files(default_config, args.values or default_values)
        mesh_config = read_mesh_config_file(args.mesh_config) if args.mesh_config else default_mesh_config()
    except (InjectorConfigError, MeshConfigError) as err:
        raise UsageError(str(err)) from err
    except OSError as err:
        raise UsageError(f"{err.filename}: {err.strerror}") from err
    documents = load_documents(args.filename, require_name=False)
    text = inject_text(documents, config, values, mesh_config, args.revision,
                       warn=lambda message: print(message, file=sys.stderr))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
