"""istio-iptables' configuration: the ``Config`` struct and the command line that fills it.

Go: ``Config`` in https://github.com/istio/istio/blob/1.19.0/tools/istio-iptables/pkg/config/config.go#L29-L64,
the flags in https://github.com/istio/istio/blob/1.19.0/tools/istio-iptables/pkg/cmd/root.go#L421-L496
and their defaults in ``bindFlags`` (root.go L247-L411) and ``constructConfig`` (root.go L124-L196).
The injection template writes these flags into the ``istio-init`` container's args
(``istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020``);
``parse_args`` reads them back as cobra/pflag would: ``-p 15001``, ``-p=15001``, ``--envoy-port
15001``, ``--envoy-port=15001``, booleans as ``--dry-run`` or ``--restore-format=false``.

Simplifications, named:

* Environment variables are not read (``ENVOY_PORT``, ``ISTIO_META_DNS_CAPTURE``, ``INVALID_DROP``,
  ``ISTIO_OUTBOUND_OWNER_GROUPS``, ...): the flags and their built-in defaults decide. The owner-group
  filters, which Istio takes from the environment only, are keyword arguments of ``parse_args``.
* An empty ``--proxy-uid`` is 1337: Istio looks the ``istio-proxy`` user up on the machine running
  the tool (root.go L160-L170) and falls back to 1337; mesh does not depend on this machine's users.
* IPv6 is on when the pod's own address (``pod_ip``) is IPv6, where Istio inspects the interfaces
  of the namespace it runs in (root.go L177-L182); DNS servers come from a ``resolv.conf`` path
  given by the caller, only when DNS capture asks for them (root.go L188-L194).
* ``--log_output_level`` and ``--log_as_json`` (the template passes them; Istio's logging flags)
  are accepted and ignored; validation (``--run-validation``) and the probe flags are parsed but do
  nothing here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from mesh.iptables import constants

MAX_OWNER_GROUPS_INCLUDE = 64  # config/validation.go L32


class ConfigError(ValueError):
    """A flag istio-iptables would reject, named."""


@dataclass
class Config:
    """``config.Config``; Go's zero values, as Istio's own tests build it by hand."""

    proxy_port: str = ""
    inbound_capture_port: str = ""
    inbound_tunnel_port: str = ""
    proxy_uid: str = ""
    proxy_gid: str = ""
    inbound_interception_mode: str = ""
    inbound_tproxy_mark: str = ""
    inbound_tproxy_route_table: str = ""
    inbound_ports_include: str = ""
    inbound_ports_exclude: str = ""
    owner_groups_include: str = ""
    owner_groups_exclude: str = ""
    outbound_ports_include: str = ""
    outbound_ports_exclude: str = ""
    outbound_ip_ranges_include: str = ""
    outbound_ip_ranges_exclude: str = ""
    kube_virt_interfaces: str = ""
    exclude_interfaces: str = ""
    iptables_probe_port: str = ""
    probe_timeout: str = ""
    dry_run: bool = False
    restore_format: bool = False
    skip_rule_apply: bool = False
    run_validation: bool = False
    redirect_dns: bool = False
    drop_invalid: bool = False
    capture_all_dns: bool = False
    enable_inbound_ipv6: bool = False
    dns_servers_v4: list[str] = field(default_factory=list)
    dns_servers_v6: list[str] = field(default_factory=list)
    network_namespace: str = ""
    cni_mode: bool = False
    host_nsenter_exec: bool = False
    trace_logging: bool = False

    def validate(self) -> None:
        """``Config.Validate``: at most 64 owner groups to capture (config/validation.go L35-L43)."""
        flt = parse_intercept_filter(self.owner_groups_include, self.owner_groups_exclude)
        if not flt.except_ and len(flt.values) > MAX_OWNER_GROUPS_INCLUDE:
            raise ConfigError(f"number of owner groups whose outgoing traffic should be redirected to Envoy "
                              f"cannot exceed {MAX_OWNER_GROUPS_INCLUDE}, got {len(flt.values)}: {flt.values}")


def split(value: str) -> list[str]:
    """``config.Split``: comma-separated, empty items dropped (config/types.go L21-L37)."""
    return [item for item in value.split(",") if item] if value else []


@dataclass(frozen=True)
class InterceptFilter:
    """``config.InterceptFilter`` (types.go L39-L65): capture only ``values``, or all except them."""

    values: tuple[str, ...]
    except_: bool


def parse_intercept_filter(include: str, exclude: str) -> InterceptFilter:
    if include == "*":
        return InterceptFilter(tuple(split(exclude)), True)
    return InterceptFilter(tuple(split(include)), False)


# (long name, short name, Config field, kind); the order of root.go's bindCmdlineFlags.
_FLAGS: tuple[tuple[str, str | None, str, type], ...] = (
    ("envoy-port", "p", "proxy_port", str),
    ("inbound-capture-port", "z", "inbound_capture_port", str),
    ("inbound-tunnel-port", "e", "inbound_tunnel_port", str),
    ("proxy-uid", "u", "proxy_uid", str),
    ("proxy-gid", "g", "proxy_gid", str),
    ("istio-inbound-interception-mode", "m", "inbound_interception_mode", str),
    ("istio-inbound-ports", "b", "inbound_ports_include", str),
    ("istio-local-exclude-ports", "d", "inbound_ports_exclude", str),
    ("istio-exclude-interfaces", "c", "exclude_interfaces", str),
    ("istio-service-cidr", "i", "outbound_ip_ranges_include", str),
    ("istio-service-exclude-cidr", "x", "outbound_ip_ranges_exclude", str),
    ("istio-outbound-ports", "q", "outbound_ports_include", str),
    ("istio-local-outbound-ports-exclude", "o", "outbound_ports_exclude", str),
    ("kube-virt-interfaces", "k", "kube_virt_interfaces", str),
    ("istio-inbound-tproxy-mark", "t", "inbound_tproxy_mark", str),
    ("istio-inbound-tproxy-route-table", "r", "inbound_tproxy_route_table", str),
    ("dry-run", "n", "dry_run", bool),
    ("iptables-trace-logging", None, "trace_logging", bool),
    ("restore-format", "f", "restore_format", bool),
    ("iptables-probe-port", None, "iptables_probe_port", str),
    ("probe-timeout", None, "probe_timeout", str),
    ("skip-rule-apply", None, "skip_rule_apply", bool),
    ("run-validation", None, "run_validation", bool),
    ("redirect-dns", None, "redirect_dns", bool),
    ("drop-invalid", None, "drop_invalid", bool),
    ("capture-all-dns", None, "capture_all_dns", bool),
    ("network-namespace", None, "network_namespace", str),
    ("cni-mode", None, "cni_mode", bool),
    ("host-nsenter-exec", None, "host_nsenter_exec", bool),
)
_LONG = {f[0]: f for f in _FLAGS}
_SHORT = {f[1]: f for f in _FLAGS if f[1]}
_IGNORED = {"log_output_level": str, "log_as_json": bool, "log_caller": str, "log_stacktrace_level": str,
            "log_target": str, "log_rotate": str}

# bindFlags' viper.SetDefault values (root.go L247-L411), for flags not given.
DEFAULTS = {
    "proxy_port": "15001", "inbound_capture_port": "15006", "inbound_tunnel_port": "15008",
    "inbound_tproxy_mark": "1337", "inbound_tproxy_route_table": "133",
    "owner_groups_include": "*", "owner_groups_exclude": "",
    "restore_format": True, "iptables_probe_port": "15002", "probe_timeout": "5s",
}


def _bool(flag: str, text: str) -> bool:
    # strconv.ParseBool's spellings, which pflag uses
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ConfigError(f"invalid argument {text!r} for {flag}: expected true or false")


def parse_args(argv: list[str], *, pod_ip: str | None = None, resolv_conf: str | Path | None = None,
               owner_groups_include: str = "*", owner_groups_exclude: str = "") -> Config:
    """The ``Config`` that ``istio-iptables <argv>`` builds (a leading ``istio-iptables`` is skipped:
    the template passes it as pilot-agent's subcommand). Raises ConfigError naming a bad flag."""
    args = list(argv)
    if args and args[0] == "istio-iptables":
        args.pop(0)
    given: dict[str, object] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            if i < len(args):
                raise ConfigError(f"unexpected argument {args[i]!r}: istio-iptables takes flags only")
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            spec = _LONG.get(name)
            if spec is None:
                if name in _IGNORED:
                    if _IGNORED[name] is str and not eq:
                        i += 1
                    continue
                raise ConfigError(f"unknown flag: --{name}")
            flag = f"--{name}"
        elif arg.startswith("-") and len(arg) > 1:
            name, value = arg[1], arg[2:]
            eq = "=" if value else ""
            if value.startswith("="):
                value = value[1:]
            spec = _SHORT.get(name)
            if spec is None:
                raise ConfigError(f"unknown shorthand flag: {name!r} in {arg}")
            flag = f"-{name}"
        else:
            raise ConfigError(f"unexpected argument {arg!r}: istio-iptables takes flags only")
        _, _, attr, kind = spec
        if kind is bool:
            given[attr] = _bool(flag, value) if eq else True
            continue
        if not eq:
            if i >= len(args):
                raise ConfigError(f"flag needs an argument: {flag}")
            value = args[i]
            i += 1
        given[attr] = value
    values = {**DEFAULTS, "owner_groups_include": owner_groups_include,
              "owner_groups_exclude": owner_groups_exclude, **given}
    cfg = Config(**values)
    if not cfg.proxy_uid:  # root.go L160-L170 (see the docstring)
        cfg.proxy_uid = constants.DEFAULT_PROXY_UID
    if not cfg.proxy_gid:  # root.go L172-L174: "For TPROXY as its uid and gid are same."
        cfg.proxy_gid = cfg.proxy_uid
    if pod_ip is not None:
        cfg.enable_inbound_ipv6 = ipaddress.ip_address(pod_ip).version == 6
    if cfg.redirect_dns and not cfg.capture_all_dns and resolv_conf is not None:
        cfg.dns_servers_v4, cfg.dns_servers_v6 = _nameservers(Path(resolv_conf))
    cfg.validate()
    return cfg


def _nameservers(path: Path) -> tuple[list[str], list[str]]:
    v4, v6 = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            (v6 if ":" in words[1] else v4).append(words[1])
    return v4, v6
