"""istiod's bootstrap (``pilot/pkg/bootstrap``): ``Server`` and its 16 stages.

https://github.com/istio/istio/tree/1.19.0/pilot/pkg/bootstrap
"""

from mesh.bootstrap.args import ServerArgs
from mesh.bootstrap.server import Server

__all__ = ["Server", "ServerArgs"]
