"""Names istio-iptables uses: tables, chains, targets and ports.

https://github.com/istio/istio/blob/1.19.0/tools/istio-iptables/pkg/constants/constants.go
"""

from __future__ import annotations

# Tables (constants.go L24-L29).
MANGLE, NAT, FILTER, RAW = "mangle", "nat", "filter", "raw"

# Built-in chains, never created with -N (constants.go L32-L46).
INPUT, OUTPUT, FORWARD, PREROUTING, POSTROUTING = "INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"
BUILT_IN_CHAINS = frozenset({INPUT, OUTPUT, FORWARD, PREROUTING, POSTROUTING})

# Targets and protocols (constants.go L49-L61).
TCP, UDP = "tcp", "udp"
TPROXY, RETURN, ACCEPT, REDIRECT, MARK, CT, DROP = "TPROXY", "RETURN", "ACCEPT", "REDIRECT", "MARK", "CT", "DROP"

# Replaced by 127.0.0.1/32 or ::1/128 in a rule written for both families (constants.go L63-L67).
IP_VERSION_SPECIFIC = "PLACEHOLDER_IP_VERSION_SPECIFIC"

# Istio's chains (constants.go L70-L77).
ISTIO_OUTPUT = "ISTIO_OUTPUT"
ISTIO_INBOUND = "ISTIO_INBOUND"
ISTIO_DIVERT = "ISTIO_DIVERT"
ISTIO_TPROXY = "ISTIO_TPROXY"
ISTIO_REDIRECT = "ISTIO_REDIRECT"
ISTIO_IN_REDIRECT = "ISTIO_IN_REDIRECT"

DEFAULT_PROXY_UID = "1337"  # constants.go L136-L138
ISTIO_AGENT_DNS_LISTENER_PORT = "15053"  # constants.go L174-L176
SO_ORIGINAL_DST = 80  # constants.go L158-L161; getsockopt(SOL_IP, SO_ORIGINAL_DST): where a REDIRECTed connect was going

# What a log rule names when --iptables-trace-logging is on (pkg/log/command.go L23-L32).
JUMP_INBOUND = "JumpInbound"
JUMP_OUTBOUND = "JumpOutbound"
EXCLUDE_INBOUND_PORT = "ExcludeInboundPort"
INCLUDE_INBOUND_PORT = "IncludeInboundPort"
INBOUND_CAPTURE = "InboundCapture"
KUBEVIRT_COMMAND = "KubevirtCommand"
EXCLUDE_INTERFACE_COMMAND = "ExcludeInterfaceCommand"
UNDEFINED_COMMAND = "UndefinedCommand"
