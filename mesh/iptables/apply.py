"""Apply istio-iptables' rules inside a network namespace, as ``istio-init`` does in the pod.

Go: ``executeIptablesRestoreCommand`` / ``executeCommands``
(https://github.com/istio/istio/blob/1.19.0/tools/istio-iptables/pkg/capture/run.go#L740-L768):
with the default ``--restore-format`` the rules go to ``iptables-restore --noflush`` in one
transaction per family (IPv6 only when there are IPv6 rules), otherwise one ``iptables`` command
at a time. The init container runs in the pod's network namespace; here ``ip netns exec <ns>``
puts the command there (Debian's ``iptables`` package, nf_tables backend).

Simplification, named: only REDIRECT mode is applied; TPROXY would also need the policy routes
of ``ConfigureRoutes`` (run_linux.go), which mesh does not write.
"""

from __future__ import annotations

import shutil
import subprocess

from mesh.iptables import constants
from mesh.iptables.capture import rules_for
from mesh.iptables.config import Config


class ApplyError(RuntimeError):
    """iptables refused the rules (the namespace keeps what it had: restore is all or nothing)."""


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def dry_run_text(cfg: Config) -> str:
    """What ``istio-iptables --dry-run`` says it would run: the ``iptables-restore --noflush`` input
    per family (run.go L750), or with ``--restore-format=false`` the commands one per line."""
    ipt = rules_for(cfg)
    if not cfg.restore_format:
        return "".join(" ".join(cmd) + "\n" for cmd in ipt.build_v4() + ipt.build_v6())
    out = f"# iptables-restore --noflush\n{ipt.build_v4_restore()}"
    if ipt.rules_v6:
        out += f"# ip6tables-restore --noflush\n{ipt.build_v6_restore()}"
    return out


def apply(cfg: Config, netns: str | None) -> None:
    """Write ``cfg``'s rules into ``netns`` (None: the namespace this process is in — never the
    root namespace from mesh's own code paths, see ``mesh.cni``)."""
    if cfg.inbound_interception_mode == constants.TPROXY:
        raise ApplyError("mesh applies REDIRECT mode only (TPROXY needs ConfigureRoutes' policy routes)")
    if shutil.which("iptables-restore") is None:
        raise ApplyError("iptables-restore not found: apt-get install -y iptables (the Makefile's system-deps)")
    ipt = rules_for(cfg)
    if cfg.restore_format:
        batches = [("iptables-restore", ipt.build_v4_restore())]
        if ipt.rules_v6:
            batches.append(("ip6tables-restore", ipt.build_v6_restore()))
        for command, text in batches:
            _run(in_netns(netns, [command, "--noflush"]), text)
    else:
        for cmd in ipt.build_v4() + ipt.build_v6():
            _run(in_netns(netns, cmd), None)


def _run(argv: list[str], stdin: str | None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ApplyError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


def save(netns: str | None, table: str = "nat") -> str:
    """``iptables-save -t <table>`` in ``netns``: what the kernel holds now."""
    done = subprocess.run(in_netns(netns, ["iptables-save", "-t", table]), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise ApplyError(f"iptables-save failed: {done.stderr.strip()}")
    return done.stdout
