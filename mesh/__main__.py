"""``python -m mesh`` — the command line, as ``pilot/cmd/pilot-discovery`` (plus istioctl-like tools).

https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-discovery/main.go
"""

from mesh.cli import main

raise SystemExit(main())
