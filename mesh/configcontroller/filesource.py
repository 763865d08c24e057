"""The file config source: Istio config from a directory of YAML files (istiod's ``--configDir``).

Go: ``makeFileMonitor`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/configcontroller.go#L354-L365
wires a ``FileSnapshot`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/monitor/file_snapshot.go#L64-L102:
walk the directory, read every ``.yaml``/``.yml`` file, keep the Istio kinds, sort by key) to a
``Monitor`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/monitor/monitor.go#L158-L211)
that compares each new snapshot with the last and turns the differences into creates, updates
and deletes on an in-memory store — whose handlers then fire like any other store's.

A snapshot is all-or-nothing, as in istiod: if any file cannot be read or parsed, the reload
is refused, the error (file, document, field) is kept in ``errors``, and the last good config
stays. Other kinds (Services, Deployments, ...) in the files are ignored.

Simplifications, named: istiod reloads on filesystem notifications; mesh reloads when
``reload()`` is called, or every ``interval`` seconds of the server's clock after ``watch()``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from mesh.clock import Clock, Timer
from mesh.configcontroller.crdclient import EVENT_ADD, EVENT_DELETE, EVENT_UPDATE, ISTIO_KINDS
from mesh.model.config import Config, ConfigHandler

log = logging.getLogger(__name__)

SUPPORTED_EXTENSIONS = (".yaml", ".yml")


class FileSourceError(ValueError):
    """A config file istiod would refuse to load; names the file, document and field."""


def parse_documents(text: str, path: str, domain_suffix: str = "cluster.local",
                    kinds: dict[str, str] | None = None) -> list[Config]:
    """The Istio configs in one multi-document YAML text; raise FileSourceError on the first defect."""
    kinds = kinds if kinds is not None else ISTIO_KINDS
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise FileSourceError(f"{path}:{where}: not valid YAML ({getattr(err, 'problem', err)})") from err
    out: list[Config] = []
    for index, doc in enumerate(documents):
        if doc is None:
            continue  # an empty document (e.g. a trailing ---)
        where = f"{path}: document {index}"
        if not isinstance(doc, dict):
            raise FileSourceError(f"{where}: expected a mapping, got {type(doc).__name__}")
        for name in ("apiVersion", "kind"):
            if not isinstance(doc.get(name), str) or not doc.get(name):
                raise FileSourceError(f"{where}: {name}: missing or empty")
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta.get("name"):
            raise FileSourceError(f"{where}: metadata.name: missing or empty")
        if "spec" in doc and not isinstance(doc["spec"], dict):
            raise FileSourceError(f"{where}: spec: expected a mapping")
        group = doc["apiVersion"].rpartition("/")[0]
        if kinds.get(doc["kind"]) != group:
            continue  # not an Istio kind this source serves
        out.append(Config.from_object(doc, domain_suffix))
    return out


def _content(c: Config) -> tuple:
    """What a change is judged on (the resource version is ours, not the file's)."""
    return (c.version, c.spec, c.labels, c.annotations)


def config_sort_key(c: Config) -> tuple[str, str, str]:
    return (c.namespace, c.kind, c.name)


class FileSource:
    """A ConfigStore fed by a directory (or a single file) of YAML."""

    def __init__(
        self, root: str | Path, domain_suffix: str = "cluster.local", kinds: dict[str, str] | None = None
    ):
        self.root = Path(root)
        self.domain_suffix = domain_suffix
        self.kinds = dict(kinds or ISTIO_KINDS)
        self.configs: dict[tuple[str, str, str], Config] = {}  # (kind, namespace, name)
        self.errors: list[str] = []
        self.handlers: dict[str, list[ConfigHandler]] = {}
        self._timer: Timer | None = None
        self._synced = False
        self.reload()

    def schemas(self) -> list[str]:
        return sorted(self.kinds)

    def files(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        return sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix in SUPPORTED_EXTENSIONS)

    def read_snapshot(self) -> list[Config]:
        """Every Istio config under the root, sorted; FileSourceError if any file is bad."""
        if not self.root.exists():
            raise FileSourceError(f"{self.root}: no such file or directory")
        out: list[Config] = []
        for path in self.files():
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as err:
                raise FileSourceError(f"{path}: cannot read ({err.strerror})") from err
            out += parse_documents(text, str(path), self.domain_suffix, self.kinds)
        return sorted(out, key=config_sort_key)

    def reload(self) -> bool:
        """Read the files again and report the differences to handlers. False if refused."""
        try:
            snapshot = self.read_snapshot()
        except FileSourceError as err:
            log.warning("file config source: %s; keeping the last good config", err)
            self.errors.append(str(err))
            return False
        fresh = {c.key: c for c in snapshot}
        for key in sorted(k for k in self.configs if k not in fresh):
            old = self.configs.pop(key)
            self._notify(old.kind, None, old, EVENT_DELETE)
        for key, cfg in sorted(fresh.items()):
            old = self.configs.get(key)
            if old is None:
                cfg.resource_version = "1"
                self.configs[key] = cfg
                self._notify(cfg.kind, None, cfg, EVENT_ADD)
            elif _content(old) != _content(cfg):
                cfg.resource_version = str(int(old.resource_version or "0") + 1)
                self.configs[key] = cfg
                self._notify(cfg.kind, old, cfg, EVENT_UPDATE)
        self._synced = True
        return True

    def watch(self, clock: Clock, interval: float = 1.0) -> None:
        """Reload every ``interval`` seconds of ``clock`` (istiod: on file notifications)."""

        def tick() -> None:
            self.reload()
            self._timer = clock.call_later(interval, tick)

        self.stop()
        self._timer = clock.call_later(interval, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- ConfigStore ------------------------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str) -> Config | None:
        return self.configs.get((kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> list[Config]:
        return [
            c
            for (k, ns, _), c in sorted(self.configs.items(), key=lambda i: (i[0][1], i[0][2]))
            if k == kind and (namespace is None or ns == namespace)
        ]

    def register_event_handler(self, kind: str, handler: ConfigHandler) -> None:
        self.handlers.setdefault(kind, []).append(handler)
        for cfg in self.list(kind):  # late handler: an add for what is already there
            handler(None, cfg, EVENT_ADD)

    def has_synced(self) -> bool:
        return self._synced

    def _notify(self, kind: str, old: Config | None, new: Config, event: str) -> None:
        for handler in list(self.handlers.get(kind, [])):
            try:
                handler(old, new, event)
            except Exception:  # one broken handler must not stop the others
                log.exception("%s handler failed", kind)
