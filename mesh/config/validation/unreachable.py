"""VirtualService rules that can never match, reported as warnings: ``analyzeUnreachableHTTPRules``
and its TCP/TLS twins, with the prefix-overlap check (``genMatchHTTPRoutes``/``coveredValidation``)
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L2401-L2646).

Three findings: a rule after a match-less rule is unused; a match identical to an earlier one
(names aside) is ineffective, and a rule whose matches all are is unused; and for HTTP, a prefix
match an earlier prefix match covers (same port, method, authority, headers, query parameters and
withoutHeaders, each equal or prefixed) is ineffective.
"""

from __future__ import annotations

import json

from mesh.config.validation.report import Report, quote


def warn_unreachable_rules(r: Report, path: str, routes: list, named: bool) -> None:
    """``named`` for HTTP routes, whose rules and matches may carry names (TCP/TLS ones do not)."""
    def rule_name(route: dict, i: int) -> str:
        return quote(route["name"]) if named and route.get("name") else f"#{i}"

    def match_name(match: dict, j: int) -> str:
        return quote(match["name"]) if named and match.get("name") else f"#{j}"

    seen: dict[str, int] = {}
    empty_seen = False
    prefixed: list[dict] = []
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        matches = route.get("match") or []
        if not matches:
            if empty_seen:
                r.warn(f"{path}[{i}]", f"virtualService rule {rule_name(route, i)} not used (only the last rule can "
                                       "have no matches)")
            empty_seen = True
            continue
        duplicates = 0
        for j, match in enumerate(matches):
            match = match if isinstance(match, dict) else {}
            key = json.dumps({k: v for k, v in match.items() if not (named and k == "name")}, sort_keys=True)
            if key in seen:
                r.warn(f"{path}[{i}].match[{j}]", f"virtualService rule {rule_name(route, i)} match "
                       f"{match_name(match, j)} is not used (duplicate/overlapping match in rule "
                       f"{rule_name(routes[seen[key]], seen[key])})")
                duplicates += 1
                continue
            seen[key] = i
            if named:
                summary = _prefix_match(match)
                if summary is not None:
                    prefixed.append({**summary, "rule": rule_name(route, i), "match": match_name(match, j),
                                     "path": f"{path}[{i}].match[{j}]"})
        if duplicates == len(matches):
            r.warn(f"{path}[{i}]", f"virtualService rule {rule_name(route, i)} not used (all matches used by prior rules)")
    for a, earlier in enumerate(prefixed):
        for later in prefixed[a + 1:]:
            if later["prefix"] != earlier["prefix"] and _covers(earlier, later):
                r.warn(later["path"], f"virtualService rule {later['rule']} match {later['match']} of prefix "
                       f"{later['prefix']} is not used (duplicate/overlapping match in rule {earlier['match']} of "
                       f"prefix {earlier['prefix']} on {earlier['rule']})")


def _exact_or_prefix(match) -> str:
    """assignExactOrPrefix: ``exact:v`` or ``prefix:v`` (regexes are not compared)."""
    match = match if isinstance(match, dict) else {}
    if match.get("exact"):
        return "exact:" + str(match["exact"])
    if match.get("prefix"):
        return "prefix:" + str(match["prefix"])
    return ""


def _prefix_match(match: dict) -> dict | None:
    """genMatchHTTPRoutes: the comparable parts of a match whose uri is a prefix match."""
    prefix = (match.get("uri") or {}).get("prefix") if isinstance(match.get("uri"), dict) else None
    if not prefix:
        return None
    return {
        "prefix": prefix, "port": match.get("port", 0),
        "method": _exact_or_prefix(match.get("method")) or "exact:GET",  # no method means GET
        "authority": _exact_or_prefix(match.get("authority")),
        **{field: {k: _exact_or_prefix(v) for k, v in (match.get(field) or {}).items()}
           for field in ("headers", "queryParams", "withoutHeaders")},
    }


def _covers(a: dict, b: dict) -> bool:
    """coveredValidation: does earlier match ``a`` take every request later match ``b`` would?"""
    if not b["prefix"].startswith(a["prefix"]) or a["port"] != b["port"]:
        return False
    for key in ("method", "authority"):
        if a[key] != b[key] and not a[key].startswith(b[key]):
            return False
    for field in ("headers", "queryParams", "withoutHeaders"):
        if len(a[field]) != len(b[field]):
            return False
        for k, v in a[field].items():
            if k not in b[field] or (v != b[field][k] and not v.startswith(b[field][k])):
                return False
    return True
