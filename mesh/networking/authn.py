"""PeerAuthentication: which mutual-TLS mode a workload's inbound port runs in.

Go: ``ComposePeerAuthentication`` and ``GetMutualTLSModeForPort``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/security/authn/v1beta1/policy_applier.go#L387-L487,
the policies that apply to one workload (``GetPeerAuthenticationsForWorkload`` and
``getConfigsForWorkload``, kept oldest first by ``addPeerAuthentication``)
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/authentication.go#L208-L274 and the
modes https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/authentication.go#L30-L45.

Three scopes, narrowest wins: a policy with a ``selector`` in the workload's namespace, then a
policy without selector in that namespace, then one without selector in the mesh's root
namespace (``istio-system``). Within one scope the oldest policy wins. A mode of ``UNSET`` (or
no ``mtls`` at all) inherits the wider scope's mode; with nothing set anywhere the mode is
PERMISSIVE: the sidecar accepts both mutual TLS and plaintext. A selector policy can set a
different mode per port (``portLevelMtls``, keyed by the workload's own port number).

A selector policy in the root namespace is ignored, as in Istio.
"""

from __future__ import annotations

from mesh.model.config import Config

STRICT = "STRICT"
PERMISSIVE = "PERMISSIVE"
DISABLE = "DISABLE"
UNSET = "UNSET"
ROOT_NAMESPACE = "istio-system"  # MeshConfig.rootNamespace default


def _mode(spec_mtls: dict | None) -> str:
    mode = (spec_mtls or {}).get("mode") or UNSET
    return mode if mode in (STRICT, PERMISSIVE, DISABLE) else UNSET


def _selects(policy: Config, labels: dict[str, str]) -> bool:
    match = ((policy.spec.get("selector") or {}).get("matchLabels")) or {}
    return all(labels.get(k) == v for k, v in match.items())


def _has_selector(policy: Config) -> bool:
    return bool(((policy.spec.get("selector") or {}).get("matchLabels")) or {})


def mtls_mode(policies: list[Config], namespace: str, labels: dict[str, str], port: int,
              root_namespace: str = ROOT_NAMESPACE) -> str:
    """The effective mode for ``port`` of a workload in ``namespace`` with ``labels``."""
    oldest = sorted(policies, key=lambda c: (c.creation_timestamp, c.namespace, c.name))
    mesh = next((p for p in oldest if p.namespace == root_namespace and not _has_selector(p)), None)
    ns = next((p for p in oldest if p.namespace == namespace != root_namespace and not _has_selector(p)), None)
    workload = next((p for p in oldest if p.namespace == namespace != root_namespace and _has_selector(p)
                     and _selects(p, labels)), None)
    mode = PERMISSIVE
    for scope in (mesh, ns, workload):
        if scope is not None and _mode(scope.spec.get("mtls")) != UNSET:
            mode = _mode(scope.spec.get("mtls"))
    if workload is not None:
        per_port = workload.spec.get("portLevelMtls") or {}
        setting = per_port.get(str(port), per_port.get(port))
        if setting is not None and _mode(setting) != UNSET:
            mode = _mode(setting)
    return mode
