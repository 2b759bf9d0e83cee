"""Both cells of a cell-space genome as one Graphviz DOT graph (pure Python).

Each cell is a cluster: its two inputs (h[i-2], h[i-1]) at the top, one box per operation, one
``+`` node per pairwise combination, and the ``concat`` node that gathers the hidden states no
combination uses.  Operations with stride 2 (in the reduction cell, on the cell inputs) say so.
"""

from __future__ import annotations

from evo.genome.amoebanet.genome import CELL_KINDS, INPUTS, Genome

__all__ = ["to_dot"]

_OP_COLOURS = {
    "identity": "#e5e7eb",
    "sep_3x3": "#bfdbfe",
    "sep_5x5": "#93c5fd",
    "sep_7x7": "#60a5fa",
    "dil_sep_3x3": "#c7d2fe",
    "avg_pool_3x3": "#bbf7d0",
    "max_pool_3x3": "#86efac",
    "conv_1x7_7x1": "#fde68a",
}
_INPUT_NAMES = ("h[i-2]", "h[i-1]")


def _state_node(kind: str, state: int) -> str:
    return f"{kind}_in{state}" if state < INPUTS else f"{kind}_add{state - INPUTS}"


def to_dot(genome: Genome, title: str | None = None, subtitle: str | None = None) -> str:
    """DOT source for the normal and reduction cells of ``genome``; ``title`` labels the graph."""
    lines = ["digraph evo {", '  rankdir=TB; compound=true; node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    label = " ".join(x for x in (title, subtitle) if x)
    if label:
        lines.append(f'  label="{label.replace(chr(34), chr(39))}"; labelloc=t;')
    for kind in CELL_KINDS:
        cell = genome.cell(kind)
        reduction = kind == "reduction"
        lines.append(f"  subgraph cluster_{kind} {{")
        lines.append(f'    label="{kind} cell"; style=rounded; color="#9ca3af";')
        for s, name in enumerate(_INPUT_NAMES):
            lines.append(f'    {kind}_in{s} [label="{name}", shape=box, style=filled, fillcolor="#dbeafe"];')
        for k, combo in enumerate(cell.combinations):
            add = f"{kind}_add{k}"
            lines.append(f'    {add} [label="+\\n{k + INPUTS}", shape=circle, width=0.4, fixedsize=false];')
            for side, (state, op) in enumerate(zip(combo.inputs, combo.ops)):
                node = f"{kind}_op{k}{'ab'[side]}"
                stride = " /2" if reduction and state < INPUTS else ""
                colour = _OP_COLOURS.get(op, "#ffffff")
                lines.append(f'    {node} [label="{op}{stride}", shape=box, style="rounded,filled", '
                             f'fillcolor="{colour}"];')
                lines.append(f"    {_state_node(kind, state)} -> {node};")
                lines.append(f"    {node} -> {add};")
        lines.append(f'    {kind}_out [label="concat", shape=box, style=filled, fillcolor="#fde68a"];')
        for s in cell.unused():
            attrs = ' [label="factorized /2"]' if reduction and s < INPUTS else ""
            lines.append(f"    {_state_node(kind, s)} -> {kind}_out{attrs};")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
