"""Real kubectl against the replay API server: discovery, tables, watch, apply, delete.

/usr/bin/kubectl on the CI image is a dispatcher that runs kubectl 1.27–1.33 according to the
server's /version, so the reported version picks the kubectl under test.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from mesh.kube import kinds
from mesh.kube.apiserver import ApiServer

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (apt-get install kubernetes-client)")


class Kubectl:
    def __init__(self, server: ApiServer, folder: Path):
        self.kubeconfig = server.write_kubeconfig(folder / "kubeconfig")
        self.cache = folder / "kube-cache"
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(folder)}

    def args(self, *args: str) -> list[str]:
        return [KUBECTL, "--cache-dir", str(self.cache), "--request-timeout", "20s", *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(self.args(*args), env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


@pytest.mark.parametrize("kube_version, discovery", [("1.28.2", "v2beta1"), ("1.33.1", "v2")])
def test_get_pods_all_namespaces(trace_file, tmp_path, kube_version, discovery):
    with ApiServer(trace_file, speed=None, tls=True, kube_version=kube_version) as server:
        kubectl = Kubectl(server, tmp_path)
        rows = table(kubectl("get", "pods", "-A").stdout)
        assert rows[0] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert [r[:5] for r in rows[1:]] == [["bookinfo", "productpage-v1", "1/1", "Running", "1"],
                                             ["bookinfo", "reviews-v1", "1/1", "Running", "1"]]
        assert discovery in server.aggregated_versions_served


def test_get_virtual_services_by_short_name(trace_file, tmp_path):
    with ApiServer(trace_file, speed=0) as server:
        kubectl = Kubectl(server, tmp_path)
        rows = table(kubectl("get", "vs", "-A").stdout)
        assert rows[0] == ["NAMESPACE", "NAME", "GATEWAYS", "HOSTS", "AGE"]
        assert [(r[1], r[2]) for r in rows[1:]] == [("ratings", "ratings"), ("reviews", "reviews")]
        wide = kubectl("get", "virtualservices.networking.istio.io", "reviews", "-n", "bookinfo", "-o",
                       "jsonpath={.spec.hosts[0]}").stdout
        assert wide == "reviews"
        everything = kubectl("get", "all", "-n", "bookinfo", "-o", "name").stdout.split()
        assert everything == ["pod/productpage-v1", "pod/ratings-v1", "service/reviews"]


def test_get_pods_watch_receives_the_replay(trace_file, tmp_path):
    with ApiServer(trace_file, speed=None) as server:
        kubectl = Kubectl(server, tmp_path)
        proc = subprocess.Popen(kubectl.args("get", "pods", "-n", "bookinfo", "-w"), env=kubectl.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line.split()) for line in proc.stdout], daemon=True).start()
        try:
            first = [lines.get(timeout=30) for _ in range(3)]
            assert [r[:3] for r in first] == [["NAME", "READY", "STATUS"], ["productpage-v1", "1/1", "Running"],
                                              ["reviews-v1", "1/1", "Running"]]
            server.run_until(3)
            later = [lines.get(timeout=30)[:3] for _ in range(3)]
            assert later == [["ratings-v1", "0/1", "Pending"], ["ratings-v1", "1/1", "Running"],
                             ["reviews-v1", "1/1", "Running"]]  # the last one is the deletion
        finally:
            proc.kill()
            proc.wait()


def test_apply_then_delete_a_pod(trace_file, tmp_path):
    manifest = tmp_path / "details.yaml"
    manifest.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: details-v1\n  namespace: bookinfo\n"
                        "  labels: {app: details}\nspec:\n  containers:\n  - name: details\n    image: details:1\n")
    with ApiServer(trace_file, speed=0) as server:
        kubectl = Kubectl(server, tmp_path)
        assert kubectl("apply", "-f", str(manifest)).stdout.strip() == "pod/details-v1 created"
        stored = server.store.find(kinds.resolve("pod"), "bookinfo", "details-v1")
        assert stored["spec"]["containers"][0]["image"] == "details:1"
        assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]
        manifest.write_text(manifest.read_text().replace("details:1", "details:2"))
        assert kubectl("apply", "-f", str(manifest)).stdout.strip() == "pod/details-v1 configured"
        image = kubectl("get", "pod", "details-v1", "-n", "bookinfo", "-o", "jsonpath={.spec.containers[0].image}")
        assert image.stdout == "details:2"
        assert kubectl("delete", "pod", "details-v1", "-n", "bookinfo").stdout.strip() == 'pod "details-v1" deleted'
        missing = kubectl("get", "pod", "details-v1", "-n", "bookinfo", check=False)
        assert missing.returncode == 1 and 'pods "details-v1" not found' in missing.stderr


def test_kubectl_sees_server_errors(trace_file, tmp_path):
    with ApiServer(trace_file, speed=0) as server:
        kubectl = Kubectl(server, tmp_path)
        unknown = kubectl("get", "widgets", check=False)
        assert unknown.returncode == 1 and 'the server doesn\'t have a resource type "widgets"' in unknown.stderr
        bad = tmp_path / "bad.yaml"
        bad.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\n  namespace: bookinfo\n"
                       "spec:\n  containers: []\n")
        invalid = kubectl("create", "-f", str(bad), check=False)
        assert invalid.returncode == 1 and "is invalid" in invalid.stderr and "spec.containers" in invalid.stderr
        assert table(kubectl("get", "ns").stdout)[1][:2] == ["bookinfo", "Active"]


def test_the_rbac_manifest_applies(tmp_path):
    manifest = Path(__file__).parent.parent / "manifests" / "clusterrole.yaml"
    with ApiServer(speed=0) as server:
        kubectl = Kubectl(server, tmp_path)
        out = kubectl("apply", "-f", str(manifest)).stdout.split("\n")
        assert [line.split()[0] for line in out if line] == [
            "namespace/mesh-system", "serviceaccount/mesh", "clusterrole.rbac.authorization.k8s.io/mesh",
            "clusterrolebinding.rbac.authorization.k8s.io/mesh"]
        role = server.store.find(kinds.resolve("clusterroles"), "", "mesh")
        verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
        assert {"list", "watch"} <= verbs
