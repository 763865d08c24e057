"""istio-iptables, the program behind a sidecar pod's ``istio-init`` container, in Python.

Istio's tool lives in https://github.com/istio/istio/tree/1.19.0/tools/istio-iptables; the modules
here are named after its packages:

- ``config``   — the flags and their defaults (``pkg/cmd/root.go``, ``pkg/config``),
- ``builder``  — the rule list and its two renderings, ``iptables`` commands and
  ``iptables-restore`` input (``pkg/builder/iptables_builder_impl.go``),
- ``capture``  — which rules a config asks for (``pkg/capture/run.go``), line by line,
- ``apply``    — feeding them to ``iptables-restore`` inside a pod's network namespace.

``python -m mesh iptables --dry-run -- <istio-iptables args>`` prints what ``istio-iptables
--dry-run`` would apply; without ``--dry-run`` it applies the rules in a network namespace.
"""
