"""The architecture of a DNA as a Graphviz DOT graph (pure Python).

Vertices are drawn as boxes with their shape and nonlinearity, convolutions as solid
edges labelled with filter size, stride and channels, identity connections as dashed
edges, skips in grey; the fixed pooling + classifier head closes the graph.
"""

from __future__ import annotations

from evo.genome.graphviz import render
from evo.genome.real2017.dna import DNA

__all__ = ["to_dot", "render"]


def to_dot(dna: DNA, title: str | None = None) -> str:
    """DOT source for ``dna``; ``title`` labels the graph (an individual's id, say)."""
    shapes = dna.shapes()
    lines = ["digraph evo {", '  rankdir=TB; node [shape=box, fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    if title:
        safe = title.replace('"', "'")
        lines.append(f'  label="{safe}  lr={dna.learning_rate:.4g}"; labelloc=t;')
    for vid in dna.topological_order():
        v = dna.vertex(vid)
        c, h, w = shapes[vid]
        if vid == dna.input_vertex:
            name, style = "input", ', style=filled, fillcolor="#dbeafe"'
        else:
            name, style = v.type.value, (', style=filled, fillcolor="#fde68a"' if v.type.value == "BN_RELU" else "")
        lines.append(f'  v{vid} [label="{name}\\n{c}x{h}x{w}\\nv{vid}"{style}];')
    for e in sorted(dna.edges, key=lambda e: e.id):
        if e.is_conv:
            kh, kw = e.kernel or (1, 1)
            label = f"conv {kh}x{kw} /{e.stride}\\n{e.channels}ch  e{e.id}"
            attrs = f'label="{label}"'
        else:
            attrs = f'label="{"gated " if e.gate else ""}e{e.id}", style=dashed'
        if e.skip:
            attrs += ', color="#888888", constraint=false'
        lines.append(f"  v{e.src} -> v{e.dst} [{attrs}];")
    lines.append(f'  head [label="global avg pool\\nlinear -> {dna.num_classes}", shape=ellipse];')
    lines.append(f"  v{dna.output_vertex} -> head;")
    lines.append("}")
    return "\n".join(lines) + "\n"
