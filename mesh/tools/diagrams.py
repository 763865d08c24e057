"""Graphviz diagrams generated from the code (never drawn by hand): ``python -m mesh diagrams``.

* ``bootstrap-stages`` — NewServer's 16 stages in order, from ``mesh.bootstrap.stages.STAGES``,
  coloured by whether mesh implements them yet (read off the ``Server`` class itself).
* ``package-map`` — istio/istio Go packages → mesh modules, from ``mesh.tools.packagemap.PACKAGE_MAP``, with the
  modules that exist in this checkout drawn solid and the planned ones dashed.
* ``push-pipeline`` — ConfigUpdate → debounce → PushContext → push queue → per-connection generators,
  with the debounce settings, the push order and the generator classes read from ``mesh.xds``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import graphviz

from mesh.bootstrap.server import Server
from mesh.bootstrap.stages import STAGES
from mesh.tools.packagemap import PACKAGE_MAP, module_exists


def implemented_stages() -> set[str]:
    """Stages whose method does more than raise StageNotImplemented."""
    done = set()
    for s in STAGES:
        source = inspect.getsource(getattr(Server, s.name))
        if "raise StageNotImplemented" not in source:
            done.add(s.name)
    return done


def bootstrap_stages() -> graphviz.Digraph:
    done = implemented_stages()
    g = graphviz.Digraph("bootstrap-stages", graph_attr={"rankdir": "TB", "label": "istiod NewServer (1.19.0)"
                         " — stages in mesh.bootstrap.Server", "labelloc": "t", "fontname": "Helvetica"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica"})
    g.node("prologue", "NewServer prologue\nEnvironment · DiscoveryServer · debug mux", fillcolor="#e8e8e8")
    previous = "prologue"
    for s in STAGES:
        colour = "#c8e6c9" if s.name in done else "#fff3cd"
        g.node(s.name, f"{s.number}. {s.go_name}\n{s.name}()", fillcolor=colour, tooltip=s.summary, URL=s.go_url)
        g.edge(previous, s.name)
        previous = s.name
    g.node("start", "Server.Start\ninformers sync · listeners", fillcolor="#e8e8e8")
    g.edge(previous, "start")
    with g.subgraph(name="cluster_legend") as legend:
        legend.attr(label="legend", fontname="Helvetica")
        legend.node("l_done", "implemented", fillcolor="#c8e6c9")
        legend.node("l_todo", "not implemented yet", fillcolor="#fff3cd")
    return g


def package_map() -> graphviz.Digraph:
    g = graphviz.Digraph("package-map", graph_attr={"rankdir": "LR", "fontname": "Helvetica",
                         "label": "istio/istio (Go) → mesh (Python)", "labelloc": "t"},
                         node_attr={"shape": "box", "fontname": "Helvetica"})
    for i, (go, py, _what) in enumerate(PACKAGE_MAP):
        exists = module_exists(py)
        # node ids must not contain ':' (Graphviz reads it as a port)
        g.node(f"go{i}", go, style="filled", fillcolor="#e3f2fd")
        g.node(f"py{i}", py, style="filled" if exists else "dashed",
               fillcolor="#c8e6c9" if exists else "white")
        g.edge(f"go{i}", f"py{i}")
    return g


def push_pipeline() -> graphviz.Digraph:
    """How a change becomes config on a proxy (stage 16, notebook 16)."""
    from mesh.xds.ads import default_generators
    from mesh.xds.debounce import DEBOUNCE_AFTER, DEBOUNCE_MAX
    from mesh.xds.types import PUSH_ORDER, short_name

    g = graphviz.Digraph("push-pipeline", graph_attr={"rankdir": "TB", "fontname": "Helvetica", "labelloc": "t",
                         "label": "the push pipeline: a change becomes config on every proxy (mesh.xds)"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                    "fillcolor": "#e3f2fd"}, edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    g.node("sources", "registry and config events\n(stage 15 handlers)", fillcolor="#e8e8e8")
    g.node("update", "DiscoveryServer.config_update\n(ConfigUpdate: a PushRequest)")
    g.node("debounce", f"Debouncer\nquiet {DEBOUNCE_AFTER * 1000:g} ms, at most {DEBOUNCE_MAX:g} s\n"
                       "merge: full OR-ed, configs unioned,\nreasons counted", fillcolor="#fff3cd")
    g.node("context", "PushContext\nfull: rebuilt (new version)\nincremental: changed endpoints forgotten")
    g.node("queue", "push queue\none pending request per connection,\nmerged while a push runs")
    g.edge("sources", "update", label="PushRequest")
    g.edge("update", "debounce")
    g.edge("debounce", "context", label="DebouncedPush")
    g.edge("context", "queue", label="AdsServer.push")
    with g.subgraph(name="cluster_connection") as con:
        con.attr(label="each connection: _push_connection, in push order", fontname="Helvetica", style="dashed")
        previous = None
        generators = default_generators()
        with con.subgraph() as row:
            row.attr(rank="same")  # the generators side by side
            for type_url in PUSH_ORDER:
                node = f"gen_{short_name(type_url)}"
                generator = type(generators[type_url]).__name__ if type_url in generators else "(no generator)"
                row.node(node, f"{short_name(type_url)}\n{generator}", fillcolor="#c8e6c9")
                if previous is not None:
                    row.edge(previous, node)
                previous = node
    g.edge("queue", f"gen_{short_name(PUSH_ORDER[0])}")
    g.node("cache", "XdsCache\nserialize once, reuse bytes", fillcolor="#f3e5f5")
    g.node("envoy", "Envoy\nACK / NACK", shape="ellipse", fillcolor="#e8e8e8")
    g.edge(previous, "cache", style="dashed")
    g.edge("cache", "envoy", label="DiscoveryResponse")
    return g


DIAGRAMS = {"bootstrap-stages": bootstrap_stages, "package-map": package_map, "push-pipeline": push_pipeline}


def write_all(out_dir: str | Path = "diagrams") -> list[Path]:
    """Write every diagram as DOT and SVG; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in DIAGRAMS.items():
        graph = build()
        dot_path = out / f"{name}.dot"
        dot_path.write_text(graph.source, encoding="utf-8")
        svg = graph.pipe(format="svg").decode("utf-8")
        svg_path = out / f"{name}.svg"
        svg_path.write_text(svg, encoding="utf-8")
        written += [dot_path, svg_path]
    return written
