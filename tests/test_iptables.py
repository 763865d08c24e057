"""istio-iptables in Python: the rules equal Istio's own golden files, and the sidecar template's
args (and each traffic annotation) come out as istio-init would apply them."""

from __future__ import annotations

import istio_src
import pytest

from mesh.config.mesh import default_mesh_config
from mesh.inject.config import load_builtin
from mesh.inject.inject import InjectionParams, inject_pod
from mesh.iptables.capture import format_rules, separate_v4_v6
from mesh.iptables.config import Config, ConfigError, parse_args

# Istio's constructTestConfig (tools/istio-iptables/pkg/capture/run_test.go L30-L42 at 1.19.0).
BASE = dict(proxy_port="15001", inbound_capture_port="15006", inbound_tunnel_port="15008",
            proxy_uid="1337", proxy_gid="1337", inbound_tproxy_mark="1337", inbound_tproxy_route_table="133",
            owner_groups_include="*", restore_format=True)

# The cases of TestIptables (run_test.go L44-L280): the golden file's name and what differs from BASE.
CASES = {
    "ipv6-empty-inbound-ports": dict(inbound_ports_include="", enable_inbound_ipv6=True),
    "ip-range": dict(outbound_ip_ranges_exclude="1.1.0.0/16", outbound_ip_ranges_include="9.9.0.0/16",
                     dry_run=True, redirect_dns=True, proxy_gid="1,2", proxy_uid="3,4", dns_servers_v4=["127.0.0.53"]),
    "tproxy": dict(inbound_interception_mode="TPROXY", inbound_ports_include="*",
                   outbound_ip_ranges_exclude="1.1.0.0/16", outbound_ip_ranges_include="9.9.0.0/16", dry_run=True,
                   redirect_dns=True, dns_servers_v4=["127.0.0.53"], exclude_interfaces="not-istio-nic",
                   enable_inbound_ipv6=True),
    "ipv6-inbound-ports": dict(inbound_ports_include="4000,5000", enable_inbound_ipv6=True),
    "ipv6-virt-interfaces": dict(inbound_ports_include="4000,5000", kube_virt_interfaces="eth0,eth1",
                                 enable_inbound_ipv6=True),
    "ipv6-ipnets": dict(inbound_ports_include="4000,5000", inbound_ports_exclude="6000,7000,",
                        kube_virt_interfaces="eth0,eth1", outbound_ip_ranges_exclude="2001:db8::/32",
                        outbound_ip_ranges_include="2001:db8::/32", enable_inbound_ipv6=True),
    "ipv6-uid-gid": dict(inbound_ports_include="4000,5000", inbound_ports_exclude="6000,7000",
                         kube_virt_interfaces="eth0,eth1", proxy_gid="1,2", proxy_uid="3,4", enable_inbound_ipv6=True,
                         outbound_ip_ranges_exclude="2001:db8::/32", outbound_ip_ranges_include="2001:db8::/32"),
    "ipv6-outbound-ports": dict(inbound_ports_include="", outbound_ports_include="32000,31000",
                                enable_inbound_ipv6=True),
    "empty": dict(),
    "kube-virt-interfaces": dict(kube_virt_interfaces="eth1,eth2", outbound_ip_ranges_include="*"),
    "ipnets": dict(outbound_ip_ranges_include="10.0.0.0/8"),
    "ipnets-with-kube-virt-interfaces": dict(kube_virt_interfaces="eth1,eth2", outbound_ip_ranges_include="10.0.0.0/8"),
    "inbound-ports-include": dict(inbound_ports_include="32000,31000"),
    "inbound-ports-wildcard": dict(inbound_ports_include="*"),
    "inbound-ports-tproxy": dict(inbound_ports_include="32000,31000", inbound_interception_mode="TPROXY"),
    "inbound-ports-wildcard-tproxy": dict(inbound_ports_include="*", inbound_interception_mode="TPROXY"),
    "dns-uid-gid": dict(redirect_dns=True, dns_servers_v4=["127.0.0.53"], dns_servers_v6=["::127.0.0.53"],
                        proxy_gid="1,2", proxy_uid="3,4", enable_inbound_ipv6=True),
    "ipv6-dns-uid-gid": dict(enable_inbound_ipv6=True, redirect_dns=True, proxy_gid="1,2", proxy_uid="3,4"),
    "outbound-owner-groups": dict(owner_groups_include="java,202"),
    "outbound-owner-groups-exclude": dict(owner_groups_exclude="888,ftp"),
    "ipv6-dns-outbound-owner-groups": dict(enable_inbound_ipv6=True, redirect_dns=True,
                                           owner_groups_include="java,202"),
    "ipv6-dns-outbound-owner-groups-exclude": dict(enable_inbound_ipv6=True, redirect_dns=True,
                                                   owner_groups_exclude="888,ftp"),
    "outbound-ports-include": dict(outbound_ports_include="32000,31000"),
    "loopback-outbound-iprange": dict(outbound_ip_ranges_include="127.1.2.3/32", dry_run=True, redirect_dns=True,
                                      dns_servers_v4=["127.0.0.53"], proxy_gid="1,2", proxy_uid="3,4"),
    "basic-exclude-nic": dict(exclude_interfaces="not-istio-nic"),
    "logging": dict(trace_logging=True),
    "drop-invalid": dict(drop_invalid=True),
}

GOLDEN_DIR = "tools/istio-iptables/pkg/capture/testdata"


@istio_src.needed
def test_every_golden_file_has_a_case():
    names = {n.removesuffix(".golden") for n in istio_src.ls(GOLDEN_DIR) if n.endswith(".golden")}
    assert names == set(CASES)


@istio_src.needed
@pytest.mark.parametrize("name", sorted(CASES))
def test_rules_equal_istios_golden_file(name):
    golden = istio_src.show(f"{GOLDEN_DIR}/{name}.golden")
    assert golden is not None, name
    assert format_rules(Config(**{**BASE, **CASES[name]})) == golden.strip("\n").split("\n")


CONFIG, VALUES = load_builtin()


def injected_init_args(annotations: dict | None = None) -> list[str]:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "reviews-v1-x", "namespace": "default", "labels": {"app": "reviews"},
                        "annotations": annotations or {}},
           "spec": {"containers": [{"name": "reviews", "image": "reviews:1",
                                    "ports": [{"containerPort": 9080}]}]}}
    pod = inject_pod(InjectionParams(pod=pod, config=CONFIG, values=VALUES,
                                     mesh_config=default_mesh_config())).pod
    (init,) = pod["spec"]["initContainers"]
    assert init["name"] == "istio-init"
    return init["args"]


# What run.go writes for the template's default args (-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x ""
# -b '*' -d 15090,15021,15020), derived by reading run.go L281-L546 at 1.19.0 statement by statement.
TEMPLATE_RULES = """\
iptables -t nat -N ISTIO_INBOUND
iptables -t nat -N ISTIO_REDIRECT
iptables -t nat -N ISTIO_IN_REDIRECT
iptables -t nat -N ISTIO_OUTPUT
iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
iptables -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
iptables -t nat -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
iptables -t nat -A PREROUTING -p tcp -j ISTIO_INBOUND
iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
iptables -t nat -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
iptables -t nat -A OUTPUT -p tcp -j ISTIO_OUTPUT
iptables -t nat -A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
iptables -t nat -A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
iptables -t nat -A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -j ISTIO_REDIRECT""".split("\n")


def test_template_args_parse_to_istios_defaults():
    args = injected_init_args()
    cfg = parse_args(args, pod_ip="10.244.0.7")
    assert args[:2] == ["istio-iptables", "-p"] and "--log_output_level=default:info" in args
    assert (cfg.proxy_port, cfg.inbound_capture_port, cfg.inbound_tunnel_port) == ("15001", "15006", "15008")
    assert (cfg.proxy_uid, cfg.proxy_gid, cfg.inbound_interception_mode) == ("1337", "1337", "REDIRECT")
    assert (cfg.outbound_ip_ranges_include, cfg.outbound_ip_ranges_exclude) == ("*", "")
    assert (cfg.inbound_ports_include, cfg.inbound_ports_exclude) == ("*", "15090,15021,15020")
    assert cfg.restore_format and not cfg.enable_inbound_ipv6 and cfg.owner_groups_include == "*"
    assert format_rules(cfg) == TEMPLATE_RULES


# Each traffic annotation, the flag the template turns it into, and the rules that change
# (the rest stays as TEMPLATE_RULES): run.go's lines for each are named in mesh/iptables/capture.py.
ANNOTATIONS = {
    "traffic.sidecar.istio.io/excludeOutboundPorts": (
        "5432,6379", "outbound_ports_exclude",
        {"after": "iptables -t nat -A OUTPUT -p tcp -j ISTIO_OUTPUT",
         "add": ["iptables -t nat -A ISTIO_OUTPUT -p tcp --dport 5432 -j RETURN",
                 "iptables -t nat -A ISTIO_OUTPUT -p tcp --dport 6379 -j RETURN"]}),
    "traffic.sidecar.istio.io/includeOutboundPorts": (
        "3306", "outbound_ports_include",
        {"after": "iptables -t nat -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
         "add": ["iptables -t nat -A ISTIO_OUTPUT -p tcp --dport 3306 -j ISTIO_REDIRECT"]}),
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": (
        "10.96.0.10/32", "outbound_ip_ranges_exclude",
        {"after": "iptables -t nat -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
         "add": ["iptables -t nat -A ISTIO_OUTPUT -d 10.96.0.10/32 -j RETURN"]}),
    "traffic.sidecar.istio.io/excludeInboundPorts": (
        "9000", "inbound_ports_exclude",
        {"after": "iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN",
         "add": ["iptables -t nat -A ISTIO_INBOUND -p tcp --dport 9000 -j RETURN"]}),
}


@pytest.mark.parametrize("annotation", sorted(ANNOTATIONS))
def test_each_annotation_changes_the_rules_as_istio_does(annotation):
    value, attr, change = ANNOTATIONS[annotation]
    cfg = parse_args(injected_init_args({annotation: value}))
    assert set(value.split(",")) <= set(getattr(cfg, attr).split(","))
    expected = list(TEMPLATE_RULES)
    at = expected.index(change["after"]) + 1
    expected[at:at] = change["add"]
    assert format_rules(cfg) == expected


def test_include_outbound_ip_ranges_captures_only_them():
    cfg = parse_args(injected_init_args({"traffic.sidecar.istio.io/includeOutboundIPRanges": "10.96.0.0/12"}))
    rules = format_rules(cfg)
    assert rules[-2:] == ["iptables -t nat -A ISTIO_OUTPUT -d 10.96.0.0/12 -j ISTIO_REDIRECT",
                          "iptables -t nat -A ISTIO_OUTPUT -j RETURN"]
    assert "iptables -t nat -A ISTIO_OUTPUT -j ISTIO_REDIRECT" not in rules


def test_include_inbound_ports_captures_only_them():
    cfg = parse_args(injected_init_args({"traffic.sidecar.istio.io/includeInboundPorts": "9080"}))
    rules = format_rules(cfg)
    assert "iptables -t nat -A ISTIO_INBOUND -p tcp --dport 9080 -j ISTIO_IN_REDIRECT" in rules
    assert "iptables -t nat -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT" not in rules
    assert not [r for r in rules if "--dport 15090" in r]  # exclusions only apply to '*'


def test_flag_spellings_and_errors():
    a = parse_args(["-p", "15001", "-b=*", "--istio-service-cidr", "*", "--istio-local-exclude-ports=1,2",
                    "--dry-run", "-f=false"])
    assert (a.proxy_port, a.inbound_ports_include, a.outbound_ip_ranges_include) == ("15001", "*", "*")
    assert a.inbound_ports_exclude == "1,2" and a.dry_run and not a.restore_format
    assert parse_args(["-u", "3"]).proxy_gid == "3"  # the gid defaults to the uid
    assert parse_args([], pod_ip="fd00::5").enable_inbound_ipv6
    with pytest.raises(ConfigError, match="unknown flag: --bogus"):
        parse_args(["--bogus", "1"])
    with pytest.raises(ConfigError, match="needs an argument: -p"):
        parse_args(["-p"])
    with pytest.raises(ConfigError, match="--restore-format"):
        parse_args(["--restore-format=maybe"])
    with pytest.raises(ConfigError, match="cannot exceed 64"):
        parse_args([], owner_groups_include=",".join(str(g) for g in range(65)))


def test_separate_v4_v6_keeps_each_family_and_skips_junk(capsys):
    v4, v6 = separate_v4_v6("10.0.0.0/8,fd00::/64,junk,127.0.0.1/32")
    assert [str(n) for n in v4.cidrs] == ["10.0.0.0/8", "127.0.0.1/32"] and v4.has_loopback_ip
    assert [str(n) for n in v6.cidrs] == ["fd00::/64"] and not v6.has_loopback_ip
    assert "Ignoring error for bug compatibility" in capsys.readouterr().err


def test_cli_dry_run_prints_what_istio_iptables_would_apply(capsys):
    from mesh.cli import main

    args = injected_init_args()
    assert main(["iptables", "--dry-run", "--", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["# iptables-restore --noflush", "* nat", "-N ISTIO_INBOUND"] and out[-1] == "COMMIT"
    # the restore input holds the same rules as the commands, without "iptables -t nat"
    assert out[2:-1] == [r.removeprefix("iptables -t nat ") for r in TEMPLATE_RULES]
    assert main(["iptables", "--", *args, "-f=false", "-n"]) == 0  # istio-iptables' own --dry-run, command form
    assert capsys.readouterr().out.splitlines() == TEMPLATE_RULES
    assert main(["iptables", "--", *args]) == 2  # applying needs --pod or --netns
    assert main(["iptables", "--netns", "someone-elses", "--", *args]) == 2
    assert "not a namespace mesh created" in capsys.readouterr().err
