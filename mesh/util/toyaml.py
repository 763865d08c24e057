"""Helm's ``toYaml``: the one way mesh writes a value into a template as YAML.

Go: Helm's ``toYaml`` (Helm's ``pkg/engine/funcs.go``: sigs.k8s.io/yaml, trailing newline trimmed)
and the injector's ``toYaml`` template function
(https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/template.go#L165-L173), which wrap the
same marshaller. The install charts (``mesh.install``), the injection template (``mesh.inject``) and
the trace simulator's ConfigMaps (``mesh.kube.simcluster``) all use this one.

Simplifications, named: PyYAML stands in for sigs.k8s.io/yaml; both sort map keys and write block
style. The trailing newline is dropped as Helm's does; the injector's Go function keeps it, which
makes no difference where the template indents the result after a key.
"""

from __future__ import annotations

import yaml


def to_yaml(value: object) -> str:
    """``toYaml``: sorted keys, block style, no trailing newline (charts use ``|-``)."""
    return yaml.safe_dump(value, sort_keys=True, default_flow_style=False).rstrip("\n")
