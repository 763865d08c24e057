"""mesh/config/watcher.py: MeshWatcher and NetworksWatcher are one Watcher; only the parser and the
order of their handlers differ (newest first for the mesh config, as istiod's watcher.go does)."""

from mesh.config.mesh import MeshWatcher
from mesh.config.meshnetworks import NetworksWatcher
from mesh.config.watcher import Watcher

_NETWORK = """networks:
  network1:
    endpoints:
    - fromRegistry: Kubernetes
    gateways:
    - address: 192.0.2.1
      port: 15443
"""


def test_handler_order_and_refusal_are_shared():
    for watcher, good, bad, order in ((MeshWatcher(), "trustDomain: example.org\n", "trustDomain: ''\n", [2, 1]),
                                      (NetworksWatcher(), _NETWORK, "networks: [1]\n", [1, 2])):
        assert isinstance(watcher, Watcher)
        calls = []
        watcher.add_handler(lambda c=calls: c.append(1))
        watcher.add_handler(lambda c=calls: c.append(2))
        before = watcher.current()
        assert not watcher.handle_yaml(bad, "cm") and watcher.last_failed and watcher.current() is before
        assert "keeping the last good" in watcher.errors[-1] and calls == []
        assert watcher.handle_yaml(good, "cm") and not watcher.last_failed
        assert calls == order
        assert not watcher.set(watcher.current())  # the same value again: no handler runs
