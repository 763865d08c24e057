"""mesh — a readable, runnable mini-istiod modelled on Istio 1.19.0.

The package layout mirrors istio/istio (see DESIGN.md §3 and README.md):
``mesh.bootstrap`` is ``pilot/pkg/bootstrap``, ``mesh.kube`` is ``pkg/kube``, and so on.
"""

ISTIO_VERSION = "1.19.0"
ISTIO_SOURCE = "https://github.com/istio/istio/blob/1.19.0"
