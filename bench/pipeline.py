"""The push benchmark's mesh as a trace, served by the real ``Server`` (informers → kube registry →
PushContext → generators → ADS): used by ``bench_push.py --pipeline``.

The trace: istiod installed as in ``traces/src/bookinfo.yaml`` (t=0), then ``namespaces`` namespaces
holding ``services`` Services ``svc-<i>`` (port 9080, http) in ``bench-<i mod namespaces>``, each
backed by a Deployment of ``replicas`` pods, optionally with a Sidecar per namespace importing
``./*`` and ``istio-system/*`` (t=1; ``sidecar()`` makes one to apply at run time instead). Built by ``mesh.kube.tracebuild`` (SimCluster plays the controllers, so
the EndpointSlices are real), written to a temporary file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from mesh.kube.tracebuild import SOURCE_DIR, build_text


def namespace_of(i: int, namespaces: int) -> str:
    return f"bench-{i % namespaces}"


def sidecar(namespace: str) -> dict:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "Sidecar", "metadata": {"name": "default", "namespace": namespace},
            "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]}}


def scenario(services: int, namespaces: int, replicas: int, sidecars: bool) -> dict:
    objects: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace_of(k, namespaces)}}
                           for k in range(namespaces)]
    for i in range(services):
        ns, name, labels = namespace_of(i, namespaces), f"svc-{i}", {"app": f"svc-{i}"}
        objects.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                        "spec": {"ports": [{"port": 9080, "name": "http"}], "selector": labels}})
        objects.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
                        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                                     {"name": "app", "image": "app", "ports": [{"containerPort": 9080}]}]}}}})
    if sidecars:
        objects += [sidecar(namespace_of(k, namespaces)) for k in range(namespaces)]
    istio = yaml.safe_load((SOURCE_DIR / "bookinfo.yaml").read_text())["steps"][0]
    for item in istio["apply"]:  # the paths of bookinfo.yaml are relative to traces/src
        if "file" in item:
            item["file"] = str(SOURCE_DIR / item["file"])
        for key, value in (item.get("configmap", {}).get("from_file") or {}).items():
            item["configmap"]["from_file"][key] = str(SOURCE_DIR / value)
    return {"name": "bench-pipeline", "description": f"{services} services in {namespaces} namespaces",
            "domain_suffix": "cluster.local", "steps": [istio, {"t": 1, "apply": objects}]}


def write_trace(services: int, namespaces: int, replicas: int, sidecars: bool = False) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="mesh-bench-"))
    source = folder / "bench-pipeline.yaml"
    source.write_text(yaml.safe_dump(scenario(services, namespaces, replicas, sidecars)))
    trace = folder / "bench-pipeline.jsonl"
    trace.write_text(build_text(source))
    return trace


if __name__ == "__main__":  # python bench/pipeline.py SERVICES NAMESPACES REPLICAS: print the trace's path
    import sys

    print(write_trace(*(int(a) for a in sys.argv[1:4])))
