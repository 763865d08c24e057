"""Which iptables rules a config asks for: istio-iptables' ``IptablesConfigurator.Run``.

Go: https://github.com/istio/istio/blob/1.19.0/tools/istio-iptables/pkg/capture/run.go — every
``run.go Lx-Ly`` below refers to that file at 1.19.0, and the code follows it statement by
statement, so the rules come out in Istio's order (its golden files,
``tools/istio-iptables/pkg/capture/testdata/*.golden``, are the test).

What the chains do, for the REDIRECT mode the sidecar template asks for:

- ``ISTIO_INBOUND`` (nat PREROUTING, tcp): connections arriving at the pod; RETURN for excluded
  ports (15090, 15021, 15020, and 15008 the tunnel port), the rest to ``ISTIO_IN_REDIRECT``,
  which REDIRECTs them to 15006 (Envoy's ``virtualInbound``).
- ``ISTIO_OUTPUT`` (nat OUTPUT, tcp): connections the pod opens. Traffic from 127.0.0.6 (Envoy's
  inbound passthrough bind address) and from the proxy's uid/gid 1337 RETURNs, so Envoy's own
  connections are not captured again; an app calling itself through its Service VIP goes back
  in through ``ISTIO_IN_REDIRECT``; other loopback traffic RETURNs; the rest (for ``-i '*'``)
  goes to ``ISTIO_REDIRECT``, which REDIRECTs it to 15001 (Envoy's ``virtualOutbound``), where
  ``SO_ORIGINAL_DST`` still tells Envoy where the app meant to go.

Simplifications, named: nothing here writes the TPROXY routes (``ConfigureRoutes``, run_linux.go)
or the IPv6 ``::6`` loopback address (run.go L259-L279); the TPROXY rules are generated (and
tested against Istio's goldens) but ``mesh.iptables.apply`` only applies REDIRECT mode.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.iptables import constants as c
from mesh.iptables.builder import IptablesBuilder, format_commands
from mesh.iptables.config import Config, InterceptFilter, parse_intercept_filter, split

OUTBOUND_MARK = "1338"  # run.go L41-L43: TPROXY marks Envoy's outbound-to-app packets with it

Network = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass
class NetworkRange:
    """run.go L66-L70: ``*``, or the CIDRs of one family and whether one is loopback."""

    is_wildcard: bool = False
    cidrs: list[Network] = field(default_factory=list)
    has_loopback_ip: bool = False


def _prefix(text: str) -> Network | None:
    """``netip.ParsePrefix``: an address and a length, kept as written (10.1.2.3/8 stays so)."""
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        return None


def _cidr(net: Network) -> str:
    return f"{net.ip}/{net.network.prefixlen}"


def separate_v4_v6(cidr_list: str) -> tuple[NetworkRange, NetworkRange]:
    """run.go L76-L104: split a comma list into IPv4 and IPv6 ranges; an unparsable item is
    skipped with a note on stderr, "for bug compatibility" as Istio says."""
    if cidr_list == "*":
        return NetworkRange(is_wildcard=True), NetworkRange(is_wildcard=True)
    v4, v6 = NetworkRange(), NetworkRange()
    for item in split(cidr_list):
        net = _prefix(item)
        if net is None:
            print(f"Ignoring error for bug compatibility with istio-iptables: netip.ParsePrefix({item!r}): "
                  "not a CIDR", file=sys.stderr)
            continue
        rng = v4 if net.version == 4 else v6
        rng.cidrs.append(net)
        rng.has_loopback_ip = rng.has_loopback_ip or net.ip.is_loopback
    return v4, v6


def _combine_owner_not(groups: tuple[str, ...]) -> list[str]:
    """``CombineMatchers`` + ``Flatten`` (capture/util.go L17-L31) for "no owner group of these"."""
    out: list[str] = []
    for group in groups:
        out += ["-m", "owner", "!", "--gid-owner", group]
    return out


class IptablesConfigurator:
    """``capture.IptablesConfigurator`` minus the command runner: ``run()`` fills ``self.iptables``."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.iptables = IptablesBuilder(cfg)

    # run.go L125-L192
    def handle_inbound_ports_include(self) -> None:
        cfg, ipt = self.cfg, self.iptables
        if not cfg.inbound_ports_include:
            return
        tproxy = cfg.inbound_interception_mode == c.TPROXY
        if tproxy:
            # run.go L137-L149: ISTIO_DIVERT marks and accepts, ISTIO_TPROXY hands to the inbound port
            ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_DIVERT, c.MANGLE, "-j", c.MARK, "--set-mark",
                            cfg.inbound_tproxy_mark)
            ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_DIVERT, c.MANGLE, "-j", c.ACCEPT)
            ipt.append_versioned_rule("127.0.0.1/32", "::1/128", c.UNDEFINED_COMMAND, c.ISTIO_TPROXY, c.MANGLE,
                                      "!", "-d", c.IP_VERSION_SPECIFIC, "-p", c.TCP, "-j", c.TPROXY,
                                      "--tproxy-mark", cfg.inbound_tproxy_mark + "/0xffffffff",
                                      "--on-port", cfg.inbound_capture_port)
            table = c.MANGLE
        else:
            table = c.NAT
        # run.go L153-L154: every inbound TCP packet walks ISTIO_INBOUND
        ipt.append_rule(c.JUMP_INBOUND, c.PREROUTING, table, "-p", c.TCP, "-j", c.ISTIO_INBOUND)
        if cfg.inbound_ports_include == "*":
            # run.go L158-L163: excluded ports first (the template's -d 15090,15021,15020)
            for port in split(cfg.inbound_ports_exclude):
                ipt.append_rule(c.EXCLUDE_INBOUND_PORT, c.ISTIO_INBOUND, table, "-p", c.TCP,
                                "--dport", port, "-j", c.RETURN)
            if tproxy:  # run.go L165-L172
                ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_INBOUND, c.MANGLE, "-p", c.TCP,
                                "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", c.ISTIO_DIVERT)
                ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_INBOUND, c.MANGLE, "-p", c.TCP, "-j", c.ISTIO_TPROXY)
            else:  # run.go L173-L176: the rest to 15006
                ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_INBOUND, c.NAT, "-p", c.TCP, "-j", c.ISTIO_IN_REDIRECT)
            return
        # run.go L178-L190: only the listed ports are captured
        for port in split(cfg.inbound_ports_include):
            if tproxy:
                ipt.append_rule(c.INCLUDE_INBOUND_PORT, c.ISTIO_INBOUND, c.MANGLE, "-p", c.TCP, "--dport", port,
                                "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", c.ISTIO_DIVERT)
                ipt.append_rule(c.INCLUDE_INBOUND_PORT, c.ISTIO_INBOUND, c.MANGLE, "-p", c.TCP, "--dport", port,
                                "-j", c.ISTIO_TPROXY)
            else:
                ipt.append_rule(c.INCLUDE_INBOUND_PORT, c.ISTIO_INBOUND, c.NAT, "-p", c.TCP, "--dport", port,
                                "-j", c.ISTIO_IN_REDIRECT)

    # run.go L194-L220
    def handle_outbound_include_rules(self, rng: NetworkRange, append: Callable, insert: Callable) -> None:
        kubevirt = split(self.cfg.kube_virt_interfaces)
        if rng.is_wildcard:
            # run.go L201-L207: everything else goes to Envoy (the template's -i '*')
            append(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-j", c.ISTIO_REDIRECT)
            for iface in kubevirt:
                insert(c.KUBEVIRT_COMMAND, c.PREROUTING, c.NAT, 1, "-i", iface, "-j", c.ISTIO_REDIRECT)
        elif rng.cidrs:
            # run.go L208-L218: only the listed ranges (includeOutboundIPRanges), then RETURN
            for net in rng.cidrs:
                for iface in kubevirt:
                    insert(c.KUBEVIRT_COMMAND, c.PREROUTING, c.NAT, 1, "-i", iface, "-d", _cidr(net),
                           "-j", c.ISTIO_REDIRECT)
                append(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-d", _cidr(net), "-j", c.ISTIO_REDIRECT)
            append(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-j", c.RETURN)

    # run.go L222-L226
    def short_circuit_kube_internal_interface(self) -> None:
        for iface in split(self.cfg.kube_virt_interfaces):
            self.iptables.insert_rule(c.KUBEVIRT_COMMAND, c.PREROUTING, c.NAT, 1, "-i", iface, "-j", c.RETURN)

    # run.go L228-L242
    def short_circuit_exclude_interfaces(self) -> None:
        ipt = self.iptables
        ifaces = split(self.cfg.exclude_interfaces)
        for iface in ifaces:
            ipt.append_rule(c.EXCLUDE_INTERFACE_COMMAND, c.PREROUTING, c.NAT, "-i", iface, "-j", c.RETURN)
            ipt.append_rule(c.EXCLUDE_INTERFACE_COMMAND, c.OUTPUT, c.NAT, "-o", iface, "-j", c.RETURN)
        if self.cfg.inbound_interception_mode == c.TPROXY:
            for iface in ifaces:
                ipt.append_rule(c.EXCLUDE_INTERFACE_COMMAND, c.PREROUTING, c.MANGLE, "-i", iface, "-j", c.RETURN)
                ipt.append_rule(c.EXCLUDE_INTERFACE_COMMAND, c.OUTPUT, c.MANGLE, "-o", iface, "-j", c.RETURN)

    # run.go L281-L546
    def run(self) -> IptablesConfigurator:
        cfg, ipt = self.cfg, self.iptables
        # run.go L293-L305: the include/exclude ranges, per family
        v4_exclude, v6_exclude = separate_v4_v6(cfg.outbound_ip_ranges_exclude)
        if v4_exclude.is_wildcard:
            raise ValueError("Invalid value for OUTBOUND_IP_RANGES_EXCLUDE")
        v4_include, v6_include = separate_v4_v6(cfg.outbound_ip_ranges_include)
        redirect_dns = cfg.redirect_dns

        self.short_circuit_exclude_interfaces()  # run.go L310
        self.short_circuit_kube_internal_interface()  # run.go L313

        if cfg.drop_invalid:  # run.go L316-L320
            ipt.append_rule(c.UNDEFINED_COMMAND, c.PREROUTING, c.MANGLE, "-m", "conntrack", "--ctstate",
                            "INVALID", "-j", c.DROP)

        # run.go L323-L324: the tunnel port (15008) is never redirected inbound
        ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_INBOUND, c.NAT, "-p", c.TCP, "--dport",
                        cfg.inbound_tunnel_port, "-j", c.RETURN)
        # run.go L329-L330: ISTIO_REDIRECT sends to Envoy's outbound port (15001)
        ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_REDIRECT, c.NAT, "-p", c.TCP, "-j", c.REDIRECT,
                        "--to-ports", cfg.proxy_port)
        # run.go L335-L336: ISTIO_IN_REDIRECT to its inbound port (15006)
        ipt.append_rule(c.INBOUND_CAPTURE, c.ISTIO_IN_REDIRECT, c.NAT, "-p", c.TCP, "-j", c.REDIRECT,
                        "--to-ports", cfg.inbound_capture_port)

        self.handle_inbound_ports_include()  # run.go L338

        # run.go L343: every outbound TCP packet walks ISTIO_OUTPUT
        ipt.append_rule(c.JUMP_OUTBOUND, c.OUTPUT, c.NAT, "-p", c.TCP, "-j", c.ISTIO_OUTPUT)
        # run.go L345-L350: excluded ports (excludeOutboundPorts), before traffic back to self
        for port in split(cfg.outbound_ports_exclude):
            ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-p", c.TCP, "--dport", port, "-j", c.RETURN)

        # run.go L353-L354: Envoy's inbound passthrough binds 127.0.0.6 to reach the app: leave it alone
        ipt.append_versioned_rule("127.0.0.6/32", "::6/128", c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT,
                                  "-o", "lo", "-s", c.IP_VERSION_SPECIFIC, "-j", c.RETURN)

        no_loopback_include = not v4_include.has_loopback_ip and not v6_include.has_loopback_ip
        tunnel = ["!", "--dport", cfg.inbound_tunnel_port]
        for uid in split(cfg.proxy_uid):  # run.go L356-L403
            # run.go L360-L371: with DNS capture, the uid's rule also leaves port 53 alone
            dns_too = ["-m", "multiport", "!", "--dports", "53," + cfg.inbound_tunnel_port]
            self._proxy_owner_rules("--uid-owner", uid, dns_too if redirect_dns else tunnel, no_loopback_include)
        for gid in split(cfg.proxy_gid):  # run.go L405-L438, the same for the proxy's group
            self._proxy_owner_rules("--gid-owner", gid, tunnel, no_loopback_include)

        owner_groups = parse_intercept_filter(cfg.owner_groups_include, cfg.owner_groups_exclude)  # L440
        self.handle_capture_by_owner_group(owner_groups)  # run.go L442

        if redirect_dns:  # run.go L444-L481: TCP DNS to the agent's 15053
            if cfg.capture_all_dns:
                ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-p", c.TCP, "--dport", "53",
                                "-j", c.REDIRECT, "--to-ports", c.ISTIO_AGENT_DNS_LISTENER_PORT)
            else:
                for server in cfg.dns_servers_v4:
                    ipt.append_rule_v4(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-p", c.TCP, "--dport", "53",
                                       "-d", server + "/32", "-j", c.REDIRECT,
                                       "--to-ports", c.ISTIO_AGENT_DNS_LISTENER_PORT)
                for server in cfg.dns_servers_v6:
                    ipt.append_rule_v6(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-p", c.TCP, "--dport", "53",
                                       "-d", server + "/128", "-j", c.REDIRECT,
                                       "--to-ports", c.ISTIO_AGENT_DNS_LISTENER_PORT)

        # run.go L486-L487: explicit localhost (Envoy-aware apps, container to container) is not captured
        ipt.append_versioned_rule("127.0.0.1/32", "::1/128", c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT,
                                  "-d", c.IP_VERSION_SPECIFIC, "-j", c.RETURN)
        # run.go L489-L494: excluded ranges (excludeOutboundIPRanges), before the inclusions
        for net in v4_exclude.cidrs:
            ipt.append_rule_v4(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-d", _cidr(net), "-j", c.RETURN)
        for net in v6_exclude.cidrs:
            ipt.append_rule_v6(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-d", _cidr(net), "-j", c.RETURN)

        self.handle_outbound_ports_include()  # run.go L496
        self.handle_outbound_include_rules(v4_include, ipt.append_rule_v4, ipt.insert_rule_v4)  # run.go L498
        self.handle_outbound_include_rules(v6_include, ipt.append_rule_v6, ipt.insert_rule_v6)  # run.go L499

        if redirect_dns:  # run.go L501-L507
            handle_dns_udp(ipt, cfg.proxy_uid, cfg.proxy_gid, cfg.dns_servers_v4, cfg.dns_servers_v6,
                           cfg.capture_all_dns, owner_groups)

        if cfg.inbound_interception_mode == c.TPROXY:
            self._tproxy_marks()
        return self

    def _proxy_owner_rules(self, flag: str, owner: str, ports: list[str], no_loopback_include: bool) -> None:
        """The three ISTIO_OUTPUT rules for one proxy uid or gid (run.go L356-L438)."""
        ipt, redirect_dns = self.iptables, self.cfg.redirect_dns
        # run.go L372-L378, L408-L413: app → its own VIP → Envoy → back in through the inbound side
        ipt.append_versioned_rule("127.0.0.1/32", "::1/128", c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT,
                                  "-o", "lo", "!", "-d", c.IP_VERSION_SPECIFIC, "-p", "tcp", *ports,
                                  "-m", "owner", flag, owner, "-j", c.ISTIO_IN_REDIRECT)
        if no_loopback_include:  # run.go L383-L397, L418-L433: app → itself over lo is not captured
            if redirect_dns:  # ...except TCP DNS, which a local DNS server may need captured
                ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-o", "lo", "-p", "tcp",
                                "!", "--dport", "53", "-m", "owner", "!", flag, owner, "-j", c.RETURN)
            else:
                ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT,
                                "-o", "lo", "-m", "owner", "!", flag, owner, "-j", c.RETURN)
        # run.go L401-L402, L437: Envoy's own traffic is never sent back to Envoy
        ipt.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-m", "owner", flag, owner, "-j", c.RETURN)

    def _tproxy_marks(self) -> None:
        """run.go L509-L544: TPROXY's marks, so Envoy's traffic to the app is not captured again."""
        cfg, ipt = self.cfg, self.iptables
        mark = cfg.inbound_tproxy_mark
        ipt.append_rule(c.UNDEFINED_COMMAND, c.PREROUTING, c.MANGLE, "-p", c.TCP, "-m", "mark", "--mark", mark,
                        "-j", "CONNMARK", "--save-mark")
        ipt.append_rule(c.UNDEFINED_COMMAND, c.OUTPUT, c.MANGLE, "-p", c.TCP, "-o", "lo", "-m", "mark",
                        "--mark", mark, "-j", c.RETURN)
        for flag, ids in (("--uid-owner", cfg.proxy_uid), ("--gid-owner", cfg.proxy_gid)):
            for owner in split(ids):
                ipt.append_versioned_rule("127.0.0.1/32", "::1/128", c.UNDEFINED_COMMAND, c.OUTPUT, c.MANGLE,
                                          "!", "-d", c.IP_VERSION_SPECIFIC, "-p", c.TCP, "-o", "lo",
                                          "-m", "owner", flag, owner, "-j", c.MARK, "--set-mark", OUTBOUND_MARK)
        ipt.append_rule(c.UNDEFINED_COMMAND, c.OUTPUT, c.MANGLE, "-p", c.TCP, "-m", "connmark", "--mark", mark,
                        "-j", "CONNMARK", "--restore-mark")
        ipt.insert_rule(c.UNDEFINED_COMMAND, c.ISTIO_INBOUND, c.MANGLE, 1, "-p", c.TCP, "-m", "mark",
                        "--mark", mark, "-j", c.RETURN)
        ipt.insert_rule_v4(c.UNDEFINED_COMMAND, c.ISTIO_INBOUND, c.MANGLE, 2, "-p", c.TCP, "-s", "127.0.0.6/32",
                           "-i", "lo", "-j", c.RETURN)
        ipt.insert_rule_v6(c.UNDEFINED_COMMAND, c.ISTIO_INBOUND, c.MANGLE, 2, "-p", c.TCP, "-s", "::6/128",
                           "-i", "lo", "-j", c.RETURN)
        ipt.insert_rule(c.UNDEFINED_COMMAND, c.ISTIO_INBOUND, c.MANGLE, 3, "-p", c.TCP, "-i", "lo", "-m", "mark",
                        "!", "--mark", OUTBOUND_MARK, "-j", c.RETURN)

    # run.go L706-L713
    def handle_outbound_ports_include(self) -> None:
        for port in split(self.cfg.outbound_ports_include):
            self.iptables.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT, "-p", c.TCP, "--dport", port,
                                      "-j", c.ISTIO_REDIRECT)

    # run.go L715-L728
    def handle_capture_by_owner_group(self, flt: InterceptFilter) -> None:
        if flt.except_:
            for group in flt.values:
                self.iptables.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT,
                                          "-m", "owner", "--gid-owner", group, "-j", c.RETURN)
        else:
            self.iptables.append_rule(c.UNDEFINED_COMMAND, c.ISTIO_OUTPUT, c.NAT,
                                      *_combine_owner_not(flt.values), "-j", c.RETURN)


class _UDPRules:
    """``UDPRuleApplier`` (run.go L548-L592) for AppendOps: one chain and table, both families."""

    def __init__(self, ipt: IptablesBuilder, table: str = c.NAT, chain: str = c.OUTPUT):
        self.ipt, self.table, self.chain = ipt, table, chain

    def run_v4(self, *args: str) -> None:
        self.ipt.append_rule_v4(c.UNDEFINED_COMMAND, self.chain, self.table, *args)

    def run_v6(self, *args: str) -> None:
        self.ipt.append_rule_v6(c.UNDEFINED_COMMAND, self.chain, self.table, *args)

    def run(self, *args: str) -> None:
        self.run_v4(*args)
        self.run_v6(*args)

    def with_chain(self, chain: str) -> _UDPRules:
        return _UDPRules(self.ipt, self.table, chain)

    def with_table(self, table: str) -> _UDPRules:
        return _UDPRules(self.ipt, table, self.chain)


def handle_dns_udp(ipt: IptablesBuilder, proxy_uid: str, proxy_gid: str, servers_v4: list[str],
                   servers_v6: list[str], capture_all: bool, owner_groups: InterceptFilter) -> None:
    """``HandleDNSUDP`` (run.go L594-L652) for appending: UDP DNS to the agent's 15053, except the
    proxy's own lookups."""
    f = _UDPRules(ipt)
    for uid in split(proxy_uid):
        f.run("-p", "udp", "--dport", "53", "-m", "owner", "--uid-owner", uid, "-j", c.RETURN)
    for gid in split(proxy_gid):
        f.run("-p", "udp", "--dport", "53", "-m", "owner", "--gid-owner", gid, "-j", c.RETURN)
    if owner_groups.except_:
        for group in owner_groups.values:
            f.run("-p", "udp", "--dport", "53", "-m", "owner", "--gid-owner", group, "-j", c.RETURN)
    else:
        f.run("-p", "udp", "--dport", "53", *_combine_owner_not(owner_groups.values), "-j", c.RETURN)
    if capture_all:
        f.run("-p", "udp", "--dport", "53", "-j", c.REDIRECT, "--to-port", c.ISTIO_AGENT_DNS_LISTENER_PORT)
    else:
        for server in servers_v4:
            f.run_v4("-p", "udp", "--dport", "53", "-d", server + "/32", "-j", c.REDIRECT,
                     "--to-port", c.ISTIO_AGENT_DNS_LISTENER_PORT)
        for server in servers_v6:
            f.run_v6("-p", "udp", "--dport", "53", "-d", server + "/128", "-j", c.REDIRECT,
                     "--to-port", c.ISTIO_AGENT_DNS_LISTENER_PORT)
    _conntrack_zones(f.with_table(c.RAW), proxy_uid, proxy_gid, servers_v4, servers_v6, capture_all)


def _conntrack_zones(f: _UDPRules, proxy_uid: str, proxy_gid: str, servers_v4: list[str],
                     servers_v6: list[str], capture_all: bool) -> None:
    """``addConntrackZoneDNSUDP`` (run.go L654-L704): the proxy's upstream DNS in conntrack zone 1,
    the apps' DNS to the agent in zone 2, so the two UDP flows cannot be confused."""
    for flag, ids in (("--uid-owner", proxy_uid), ("--gid-owner", proxy_gid)):
        for owner in split(ids):
            f.run("-p", "udp", "--dport", "53", "-m", "owner", flag, owner, "-j", c.CT, "--zone", "1")
            f.run("-p", "udp", "--sport", "15053", "-m", "owner", flag, owner, "-j", c.CT, "--zone", "2")
    if capture_all:
        f.run("-p", "udp", "--dport", "53", "-j", c.CT, "--zone", "2")
        f.with_chain(c.PREROUTING).run("-p", "udp", "--sport", "53", "-j", c.CT, "--zone", "1")
        return
    for server in servers_v4:
        f.run_v4("-p", "udp", "--dport", "53", "-d", server + "/32", "-j", c.CT, "--zone", "2")
        f.with_chain(c.PREROUTING).run_v4("-p", "udp", "--sport", "53", "-d", server + "/32",
                                          "-j", c.CT, "--zone", "1")
    for server in servers_v6:
        f.run_v6("-p", "udp", "--dport", "53", "-d", server + "/128", "-j", c.CT, "--zone", "2")
        f.with_chain(c.PREROUTING).run_v6("-p", "udp", "--sport", "53", "-d", server + "/128",
                                          "-j", c.CT, "--zone", "1")


def rules_for(cfg: Config) -> IptablesBuilder:
    """The builder filled by ``run()`` for ``cfg``."""
    return IptablesConfigurator(cfg).run().iptables


def format_rules(cfg: Config) -> list[str]:
    """The rules as ``iptables``/``ip6tables`` command lines, as in Istio's golden files."""
    ipt = rules_for(cfg)
    return format_commands(ipt.build_v4() + ipt.build_v6())
