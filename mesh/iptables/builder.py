"""The rule list istio-iptables builds, and its two renderings.

Go: https://github.com/istio/istio/blob/1.19.0/tools/istio-iptables/pkg/builder/iptables_builder_impl.go
Rules are kept per family (IPv4, IPv6; IPv6 rules only when ``enable_inbound_ipv6``), in the order
they were added. ``build_v4``/``build_v6`` give ``iptables`` commands (``-N`` for each new chain
first, then the rules: what Istio's golden files hold), ``build_v4_restore``/``build_v6_restore``
the ``iptables-restore`` input that istio-iptables feeds to ``iptables-restore --noflush``.

Simplification, named: Go fills the restore input from a map, so its table order varies from run
to run; here it is fixed (filter, nat, mangle, then any other table in order of first use).
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.iptables import constants
from mesh.iptables.config import Config


@dataclass(frozen=True)
class Rule:
    chain: str
    table: str
    params: tuple[str, ...]  # ("-A", chain, ...) or ("-I", chain, position, ...)


def _log_rule(op: tuple[str, ...], command: str, params: tuple[str, ...]) -> tuple[str, ...] | None:
    """The NFLOG twin of a rule under --iptables-trace-logging: the same match, logged with the
    command's name (builder L72-L86, L112-L124). Only named commands get one."""
    if command == constants.UNDEFINED_COMMAND or "-j" not in params:
        return None
    match = params[:params.index("-j")]
    return (*op, *match, "-j", "NFLOG", "--nflog-prefix", f'"{command}"', "--nflog-group", "1337",
            "--nflog-size", "20")


class IptablesBuilder:
    def __init__(self, cfg: Config | None = None):
        self.cfg = cfg or Config()
        self.rules_v4: list[Rule] = []
        self.rules_v6: list[Rule] = []

    # -- insert (builder L60-L99) ----------------------------------------------------------
    def insert_rule(self, command: str, chain: str, table: str, position: int, *params: str) -> None:
        self.insert_rule_v4(command, chain, table, position, *params)
        self.insert_rule_v6(command, chain, table, position, *params)

    def insert_rule_v4(self, command: str, chain: str, table: str, position: int, *params: str) -> None:
        self._insert(self.rules_v4, command, chain, table, position, params)

    def insert_rule_v6(self, command: str, chain: str, table: str, position: int, *params: str) -> None:
        if self.cfg.enable_inbound_ipv6:
            self._insert(self.rules_v6, command, chain, table, position, params)

    def _insert(self, rules, command, chain, table, position, params) -> None:
        op = ("-I", chain, str(position))
        rules.append(Rule(chain, table, (*op, *params)))
        # Inserted after the real rule at the same position, the log rule ends up before it.
        logged = _log_rule(op, command, params) if self.cfg.trace_logging else None
        if logged:
            rules.append(Rule(chain, table, logged))

    # -- append (builder L110-L148) --------------------------------------------------------
    def append_rule(self, command: str, chain: str, table: str, *params: str) -> None:
        self.append_rule_v4(command, chain, table, *params)
        self.append_rule_v6(command, chain, table, *params)

    def append_rule_v4(self, command: str, chain: str, table: str, *params: str) -> None:
        self._append(self.rules_v4, command, chain, table, params)

    def append_rule_v6(self, command: str, chain: str, table: str, *params: str) -> None:
        if self.cfg.enable_inbound_ipv6:
            self._append(self.rules_v6, command, chain, table, params)

    def _append(self, rules, command, chain, table, params) -> None:
        op = ("-A", chain)
        logged = _log_rule(op, command, params) if self.cfg.trace_logging else None
        if logged:
            rules.append(Rule(chain, table, logged))
        rules.append(Rule(chain, table, (*op, *params)))

    def append_versioned_rule(self, ipv4: str, ipv6: str, command: str, chain: str, table: str,
                              *params: str) -> None:
        """One rule for both families with the placeholder replaced by each family's address
        (builder L228-L246)."""
        def fill(value: str) -> tuple[str, ...]:
            return tuple(value if p == constants.IP_VERSION_SPECIFIC else p for p in params)
        self.append_rule_v4(command, chain, table, *fill(ipv4))
        self.append_rule_v6(command, chain, table, *fill(ipv6))

    # -- render (builder L150-L226) --------------------------------------------------------
    @staticmethod
    def _new_chains(rules: list[Rule]) -> list[tuple[str, str]]:
        """(table, chain) of each non-built-in chain, in order of first use."""
        seen: dict[tuple[str, str], None] = {}
        for r in rules:
            if r.chain not in constants.BUILT_IN_CHAINS:
                seen.setdefault((r.table, r.chain), None)
        return list(seen)

    def _build(self, command: str, rules: list[Rule]) -> list[list[str]]:
        out = [[command, "-t", table, "-N", chain] for table, chain in self._new_chains(rules)]
        out += [[command, "-t", r.table, *r.params] for r in rules]
        return out

    def build_v4(self) -> list[list[str]]:
        return self._build("iptables", self.rules_v4)

    def build_v6(self) -> list[list[str]]:
        return self._build("ip6tables", self.rules_v6)

    def _build_restore(self, rules: list[Rule]) -> str:
        tables: dict[str, list[str]] = {constants.FILTER: [], constants.NAT: [], constants.MANGLE: []}
        for table, chain in self._new_chains(rules):
            tables.setdefault(table, []).append(f"-N {chain}")
        for r in rules:
            tables.setdefault(r.table, []).append(" ".join(r.params))
        text = []
        for table, lines in tables.items():
            if lines:
                text += [f"* {table}", *lines, "COMMIT"]
        return "".join(line + "\n" for line in text)

    def build_v4_restore(self) -> str:
        return self._build_restore(self.rules_v4)

    def build_v6_restore(self) -> str:
        return self._build_restore(self.rules_v6)


def format_commands(commands: list[list[str]]) -> list[str]:
    """``FormatIptablesCommands`` (capture/format.go L19-L25): each command as one line."""
    return [" ".join(cmd) for cmd in commands]
