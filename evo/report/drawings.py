"""Drawings of architectures for the report: the search space's DOT rendered to inline SVG by
Graphviz ``dot``, or a plain-text listing of the graph where Graphviz is not installed.

The drawing comes from the population's search space (``SearchSpace.draw``, the same DOT as
``evo graph``), so the report shows the genome the way the rest of evo does.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from typing import Any, Mapping

from evo.genome import space_of  # the population's search space (re-exported for the report)
from evo.report.html import esc

__all__ = ["Drawer", "space_of", "text_listing"]

_SVG_START = re.compile(r"<svg\b")
_ID_ATTR = re.compile(r'\bid="([^"]*)"')


def text_listing(dna: Mapping[str, Any]) -> str:
    """The architecture as lines of text: one line per connection (real2017's vertex/edge
    graph), or the genome's JSON keys for a genome without edges."""
    edges = dna.get("edges")
    if not isinstance(edges, list):
        keys = ", ".join(sorted(str(k) for k in dna))
        return f"(no edge list in this genome; its fields: {keys})"
    vtype = {v.get("id"): v.get("type") for v in dna.get("vertices") or [] if isinstance(v, Mapping)}
    lines = [f"input v{dna.get('input_vertex')}  output v{dna.get('output_vertex')}  "
             f"lr {dna.get('learning_rate')}"]
    for e in sorted((e for e in edges if isinstance(e, Mapping)), key=lambda e: e.get("id", 0)):
        if e.get("type") == "CONV":
            k = e.get("kernel") or [1, 1]
            what = f"conv {k[0]}x{k[1]} /{e.get('stride')} {e.get('channels')}ch"
        else:
            what = "identity"
        skip = " (skip)" if e.get("skip") else ""
        lines.append(f"v{e.get('src')} -> v{e.get('dst')} [{vtype.get(e.get('dst'), '?')}]: {what}{skip}")
    lines.append(f"v{dna.get('output_vertex')} -> global pool -> linear -> {dna.get('num_classes')} classes")
    return "\n".join(lines)


class Drawer:
    """Draws genomes of one search space; identical drawings are rendered once.

    ``graphviz``: use ``dot`` when installed (None: detect).  :attr:`fallback_reason` says why
    text is shown instead, once, for the page.
    """

    def __init__(self, space: Any, graphviz: bool | None = None, timeout_s: float = 60.0):
        self.space = space
        self.dot = shutil.which("dot") if graphviz is not False else None
        self.timeout_s = timeout_s
        if self.dot:
            self.fallback_reason: str | None = None
        elif graphviz is False:
            self.fallback_reason = "Architectures are listed as text (Graphviz not used: --no-graphviz)"
        else:
            self.fallback_reason = ("Graphviz `dot` is not installed, so architectures are listed as text "
                                    "(install it: apt-get install graphviz, or conda install graphviz)")
        self._cache: dict[str, str] = {}
        self._n = 0

    def draw(self, dna: Mapping[str, Any], title: str) -> tuple[str, str]:
        """(HTML, kind) for one genome: kind ``svg`` (inline SVG) or ``text`` (a ``<pre>``)."""
        try:
            genome = self.space.from_dict(dna)
            src = self.space.draw(genome, title=title)
        except Exception as e:  # noqa: BLE001 - a genome this version cannot read: show it as text
            return self._text(dna, f"cannot draw this genome ({e})"), "text"
        if self.dot is None:
            return self._text(dna), "text"
        key = hashlib.sha1(src.encode()).hexdigest()
        svg = self._cache.get(key)
        if svg is None:
            try:
                res = subprocess.run([self.dot, "-Tsvg"], input=src.encode(), capture_output=True,
                                     timeout=self.timeout_s, check=True)
            except (OSError, subprocess.SubprocessError) as e:
                err = getattr(e, "stderr", b"") or b""
                why = err.decode(errors="replace").strip().splitlines()
                return self._text(dna, f"Graphviz failed: {why[-1] if why else e}"), "text"
            out = res.stdout.decode("utf-8", errors="replace")
            m = _SVG_START.search(out)
            if m is None:
                return self._text(dna, "Graphviz wrote no SVG"), "text"
            svg = out[m.start():]
            self._cache[key] = svg
        self._n += 1
        prefix = f"a{self._n}-"
        svg = _ID_ATTR.sub(lambda m: f'id="{prefix}{m.group(1)}"', svg)  # unique ids on the page
        return svg, "svg"

    @staticmethod
    def _text(dna: Mapping[str, Any], note: str | None = None) -> str:
        head = f"<div class=\"muted\">{esc(note)}</div>" if note else ""
        return f"{head}<pre>{esc(text_listing(dna))}</pre>"
