"""One watcher for a config document that changes at runtime: the MeshConfig and the MeshNetworks.

Go: ``mesh.Watcher`` https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/watcher.go and
``mesh.NetworksWatcher`` https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/networks_watcher.go —
two copies of the same idea in Go (hold the current value, swap it when a new one differs, call the
handlers), one class here. ``MeshWatcher`` (``mesh.config.mesh``) and ``NetworksWatcher``
(``mesh.config.meshnetworks``) say what they parse and in which order their handlers run.

Bad input never replaces a good value: ``handle_yaml`` records why it refused (``errors``,
``last_failed``) and keeps the last good one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable


class Watcher:
    """Holds the current value and calls handlers when it really changes."""

    what = "config"  # for messages: "mesh config", "mesh networks"
    error: type[Exception] = ValueError  # what ``parse`` raises on bad input
    newest_handler_first = False

    def __init__(self, value: dict, source: str = "defaults"):
        self._value = value
        self._handlers: list[Callable[[], object]] = []
        self.source = source
        self.errors: list[str] = []  # why the last bad inputs were refused, newest last
        self.last_failed = False  # did the last handle_yaml refuse its input?

    @property
    def log(self) -> logging.Logger:
        """The logger of the module that defines the watcher (``mesh.config.mesh``, ...)."""
        return logging.getLogger(type(self).__module__)

    def parse(self, text: str) -> dict:
        raise NotImplementedError

    def current(self) -> dict:
        return self._value

    def add_handler(self, handler: Callable[[], object]) -> None:
        self._handlers.append(handler)

    def handle_yaml(self, text: str, origin: str) -> bool:
        """Apply new YAML; returns True when the value changed (and handlers ran)."""
        try:
            value = self.parse(text)
        except self.error as err:
            message = f"{origin}: {err}; keeping the last good {self.what}"
            self.log.warning("%s", message)
            self.errors.append(message)
            self.last_failed = True
            return False
        self.last_failed = False
        return self.set(value)

    def set(self, value: dict) -> bool:
        if value == self._value:
            return False
        self._value = value
        self.changed(value)
        handlers = list(self._handlers)
        for handler in reversed(handlers) if self.newest_handler_first else handlers:
            handler()
        return True

    def changed(self, value: dict) -> None:
        """A hook for a log line when the value changes."""
