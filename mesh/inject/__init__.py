"""Sidecar injection: ``pkg/kube/inject`` in Python.

https://github.com/istio/istio/tree/1.19.0/pkg/kube/inject — one small module per job:

* ``config``     — the injector ConfigMap (``config`` + ``values``), parsed and watched;
* ``policy``     — whether a pod gets a sidecar, and why;
* ``validate``   — the injection annotations istiod refuses (bad CIDRs, ports, modes);
* ``template``   — Jinja2 templates (sidecar, gateway, grpc-agent, grpc-simple, custom) and their helpers;
* ``merge``      — strategic merge of a rendered template into a pod;
* ``probes``     — rewriting app probes to go through pilot-agent;
* ``inject``     — one pod's injection, ending in a JSONPatch;
* ``webhook``    — the ``/inject`` AdmissionReview endpoint and the decision record;
* ``admission``  — kube-apiserver's part on replay: MutatingWebhookConfiguration matching;
* ``kubeinject`` — ``mesh inject``: workloads in YAML files, like ``istioctl kube-inject``.
"""
