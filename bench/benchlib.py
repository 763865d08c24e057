"""What the push benchmarks share: percentiles, CPU and memory accounting, the simulated client
processes, and the table that puts a figure beside its fan-out baseline (``bench_push.py``).

No Go counterpart: istiod's load tests live outside its repository (istio/tools, ``perf/load``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

BENCH_PUSH = Path(__file__).with_name("bench_push.py")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_cpu() -> float:
    """CPU seconds of this process (the server: event loop and gRPC's threads), user + system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pid_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


def load_average() -> str:
    """``uptime``'s three load averages, for the record of how busy the machine was."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Phase:
    """Wall time, server CPU, simulated clients' CPU and everyone else's CPU over one measurement."""

    def __init__(self, clients: list[subprocess.Popen]):
        self.clients = clients
        self.t0 = time.perf_counter()
        self.cpu0, self.clients0, self.busy0 = own_cpu(), self._clients_cpu(), machine_busy()

    def _clients_cpu(self) -> float:
        total = 0.0
        for c in self.clients:
            try:
                total += pid_cpu(c.pid)
            except (FileNotFoundError, ProcessLookupError):  # a client process that has exited
                pass
        return total

    def end(self) -> dict[str, float]:
        busy, total = machine_busy()
        server, clients = own_cpu() - self.cpu0, self._clients_cpu() - self.clients0
        wall = time.perf_counter() - self.t0
        cores = (total - self.busy0[1]) / wall
        return {"wall": wall, "server": server, "clients": clients,
                "others": max(0.0, busy - self.busy0[0] - server - clients), "cores": cores,
                "load": float(Path("/proc/loadavg").read_text().split()[0])}


def cpu_note(phase: dict[str, float], last_send: float | None = None) -> str:
    sent = f"last response handed to gRPC at {last_send:.2f} s; " if last_send is not None else ""
    return (f"{sent}CPU over {phase['wall']:.2f} s: server {phase['server']:.2f} s, clients {phase['clients']:.2f} s, "
            f"other processes {phase['others']:.2f} s ({phase['cores']:.0f} cores, load {phase['load']:.1f})")


def start_clients(port: int, n_clients: int, n_services: int, processes: int, namespaces: int = 1,
                  scoped: bool = False, protocol: str = "sotw") -> list[subprocess.Popen]:
    """The simulated ADS clients (``bench_push.py --client-process``), spread over ``processes``
    processes; each waits for ``go`` on its stdin and runs until stdin closes. Client ``i`` is in
    namespace ``i mod namespaces`` and watches the EDS of every service, or (``scoped``) of its
    namespace's; ``protocol``: ``sotw`` or ``delta``."""
    per = -(-n_clients // processes)  # clients per process, rounded up
    return [subprocess.Popen([sys.executable, str(BENCH_PUSH), "--client-process", str(port),
                              str(min(per, n_clients - k * per)), str(n_services), str(k * per), str(namespaces),
                              str(int(scoped)), protocol], stdin=subprocess.PIPE, text=True)
            for k in range(processes)]


def go(clients: list[subprocess.Popen]) -> None:
    for client in clients:
        client.stdin.write("go\n")
        client.stdin.flush()


def end_clients(clients: list[subprocess.Popen]) -> None:
    for client in clients:
        client.stdin.close()
    for client in clients:
        try:
            client.wait(10)
        except subprocess.TimeoutExpired:
            client.kill()


# -- the comparison table ----------------------------------------------------------------------------
# figure key → (label, target, unit): the figures of issue 12, in the order they print.
FIGURES = {
    "storm": ("connect storm, all ACKed CDS+EDS", 5.0, "s"),
    "vs": ("VirtualService edit (CDS) p99", 0.8, "s"),
    "eds": ("incremental EDS p99", 0.5, "s"),
    "dr": ("DestinationRule edit (CDS+EDS) p99", 1.3, "s"),
    "scoped": ("scoped VirtualService edit p99", 0.2, "s"),
    "rss": ("server peak RSS", 512.0, "MB"),
}


def median_figure(values) -> float | None:
    """A figure measured over rounds is reported as the median of its rounds' p99s."""
    if values is None:
        return None
    if isinstance(values, (int, float)):
        return float(values)
    values = sorted(values)
    return values[len(values) // 2] if values else None


def _fmt(value: float, unit: str) -> str:
    return f"{value:.0f} {unit}" if unit == "MB" else f"{value:.2f} {unit}"


def print_table(measured: dict, baseline: dict | None, title: str, baseline_label: str = "fan-out",
                targets: dict[str, float] | None = None) -> None:
    """One row per figure: measured (median of the rounds), the baseline, their ratio, the target."""
    print(f"\n{title} (load average {load_average()})")
    print(f"  {'figure':<38} {'measured':>10} {baseline_label:>10} {'ratio':>7} {'target':>10}")
    for key, (label, target, unit) in FIGURES.items():
        value = median_figure(measured.get(key))
        if value is None:
            continue
        target = (targets or {}).get(key, target)
        base = median_figure((baseline or {}).get(key))
        ratio = f"{value / base:.2f}x" if base else "—"
        print(f"  {label:<38} {_fmt(value, unit):>10} {_fmt(base, unit) if base else '—':>10} {ratio:>7} "
              f"{'≤ ' + _fmt(target, unit):>10}")
