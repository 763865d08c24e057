"""Installing the mesh: profiles, the renderer, the applier and the operator loop.

The Python side of Istio's ``operator/`` and ``manifests/`` trees
(https://github.com/istio/istio/tree/1.19.0/operator, https://github.com/istio/istio/tree/1.19.0/manifests):

* ``profiles/*.yaml`` and ``chart_values.yaml`` — Istio 1.19's profiles and the charts' defaults, as data;
* ``tpath`` — paths into YAML trees and istioctl's ``--set path=value``;
* ``iop`` — the effective IstioOperator (profile + files + ``--set``), validation, Helm values;
* ``render`` / ``overlay`` — the chart templates as functions, and the ``k8s`` settings laid over them;
* ``apply`` — create-or-update in dependency order, owner labels, waiting, pruning;
* ``operator`` — the controller that reconciles IstioOperator objects with the same renderer.
"""
