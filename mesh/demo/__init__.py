"""The bookinfo demo: the whole mini istiod, tiny bookinfo apps on their pod IPs and one real Envoy
per pod, so a ``curl`` through a sidecar shows the control plane's config at work.

``apps`` holds the apps (productpage → reviews → ratings, real HTTP through the sidecars),
``pods`` turns the trace's pods into Envoy identities, ``podmode`` decides where pods run (network
namespaces with istio-init's capture as root, else loopback stand-ins), ``runner`` starts and stops
everything in order; ``e2e`` is the rig notebook 17 and the Envoy tests use (apps that answer with
their name, waits on the virtual clock's pushes, traffic splits). Istio's own sample is
https://github.com/istio/istio/tree/1.19.0/samples/bookinfo (its productpage calls details and
reviews, and reviews v2/v3 call ratings: the same call graph, without the pages).
"""
