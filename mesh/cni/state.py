"""What each run made, on disk, so leftovers of a killed run can be found and removed safely.

A run (one ``Node``) is named ``mesh<pid>.<n>``: the pid of the process that owns it and a counter
within that process. Its state file ``/run/mesh/<run>.json`` lists its namespaces; the shared file
``/run/mesh/blackholes.json`` lists the root-namespace blackhole routes that a mesh run added (and
so may remove: routes that were there before mesh are never touched). Everything that reads or
changes these files holds ``/run/mesh/lock`` (flock), so parallel runs see one another.

A run is *stale* when its process is gone — or a different process has its pid now, told apart by
the process start time (``/proc/<pid>/stat`` field 22) recorded next to the pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from pathlib import Path

STATE_DIR = Path(os.environ.get("MESH_RUN_DIR", "/run/mesh"))
RUN_NAME = re.compile(r"^mesh(\d+)\.(\d+)$")
NETNS_NAME = re.compile(r"^mesh(\d+)\.(\d+)-")  # every namespace a run creates starts so


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; fields after the name start at 3


def alive(pid: int, started: str | None = None) -> bool:
    now = start_time(pid)
    return now is not None and (started is None or now == started)


@contextlib.contextmanager
def locked():
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def path(run: str) -> Path:
    return STATE_DIR / f"{run}.json"


def read(run: str) -> dict | None:
    try:
        return json.loads(path(run).read_text())
    except (OSError, ValueError):
        return None


def write(run: str, state: dict) -> None:
    tmp = path(run).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path(run))


def runs() -> dict[str, dict]:
    """Every run with a state file: name → state (unreadable files count as empty states)."""
    out = {}
    for file in sorted(STATE_DIR.glob("mesh*.json")):
        name = file.stem
        if RUN_NAME.match(name):
            out[name] = read(name) or {}
    return out


def is_live(run: str, state: dict | None) -> bool:
    match = RUN_NAME.match(run)
    if not match:
        return False
    return alive(int(match.group(1)), (state or {}).get("started"))


def blackholes() -> list[str]:
    try:
        return list(json.loads((STATE_DIR / "blackholes.json").read_text()))
    except (OSError, ValueError):
        return []


def set_blackholes(routes: list[str]) -> None:
    file = STATE_DIR / "blackholes.json"
    if routes:
        file.write_text(json.dumps(sorted(routes)))
    else:
        file.unlink(missing_ok=True)
