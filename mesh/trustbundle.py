"""The workload trust bundle: every root a workload should trust, from every source.

Go: ``initWorkloadTrustBundle`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1235-L1286)
over ``pilot/pkg/trustbundle`` (https://github.com/istio/istio/tree/1.19.0/pilot/pkg/trustbundle). It is
a top-level module, like Go's package, because the model's Environment holds it: it sits below
``mesh.model`` and imports nothing of mesh. Sources: the Istio CA's root, and the ``caCertificates`` of the
mesh config (re-read on every mesh config change). When the merged set changes, every proxy may
need new validation contexts, so the callback asks for a full push.

Simplification, named: the remote SPIFFE bundle endpoints source (polled over HTTPS) is left out.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509

SOURCE_ISTIO_CA = "IstioCA"
SOURCE_MESH_CONFIG = "MeshConfig"


class TrustBundle:
    def __init__(self):
        self._by_source: dict[str, list[str]] = {}
        self._callbacks: list[Callable[[], object]] = []

    def on_update(self, callback: Callable[[], object]) -> None:
        self._callbacks.append(callback)

    def update_source(self, source: str, pems: list[str]) -> bool:
        """Replace one source's roots; a PEM that does not parse is refused (ValueError) and changes nothing."""
        cleaned = []
        for pem in pems:
            try:
                x509.load_pem_x509_certificate(pem.encode())
            except ValueError as err:
                raise ValueError(f"{source}: not a PEM certificate ({err})") from err
            cleaned.append(pem.strip() + "\n")
        before = self.pems()
        self._by_source[source] = cleaned
        changed = self.pems() != before
        if changed:
            for callback in list(self._callbacks):
                callback()
        return changed

    def add_mesh_config(self, mesh: dict) -> bool:
        pems = [c["pem"] for c in mesh.get("caCertificates") or [] if c.get("pem")]
        return self.update_source(SOURCE_MESH_CONFIG, pems)

    def pems(self) -> list[str]:
        """All roots, de-duplicated, sorted so the bundle's text is stable."""
        return sorted({p for pems in self._by_source.values() for p in pems})

    def sources(self) -> dict[str, int]:
        return {source: len(pems) for source, pems in sorted(self._by_source.items())}
