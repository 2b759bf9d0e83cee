"""HTML building blocks of the report page: escaping, tables, embedded figures, the page shell.

Everything the page needs is inside the one file: the style sheet is inline, figures are
base64 PNG ``<img>`` elements or inline SVG, and there is no script and no external link, so
the page opens from a cluster's file system or a laptop without a server or a network.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Iterable, Sequence

__all__ = ["esc", "fmt", "sci", "table", "png_img", "section", "page", "CSS"]

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #111827;
       background: #f9fafb; line-height: 1.4; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.1em; }
h2 { font-size: 1.3em; margin: 1.6em 0 0.4em; border-bottom: 1px solid #d1d5db; padding-bottom: 4px; }
h3 { font-size: 1.1em; margin: 1.2em 0 0.4em; }
.muted { color: #6b7280; font-size: 0.9em; }
.population { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 4px 20px 20px;
              margin: 24px 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.9em; background: #fff; }
th, td { border: 1px solid #e5e7eb; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fef3c7; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e7eb; background: #fff; }
figcaption { color: #4b5563; font-size: 0.85em; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; padding: 6px 12px; min-width: 140px; }
.card .k { color: #6b7280; font-size: 0.8em; }
.card .v { font-size: 1.15em; font-weight: 600; }
.bar { height: 10px; background: #e5e7eb; border-radius: 5px; overflow: hidden; width: 320px; }
.bar > div { height: 100%; background: #2563eb; }
.warn { background: #fef2f2; border-left: 4px solid #dc2626; padding: 4px 10px; margin: 4px 0; }
.ok { background: #f0fdf4; border-left: 4px solid #16a34a; padding: 4px 10px; margin: 4px 0; }
.note { background: #fffbeb; border-left: 4px solid #d97706; padding: 4px 10px; margin: 4px 0; }
.lineage { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.ancestor { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; padding: 6px; max-width: 100%; }
.ancestor .head { font-size: 0.85em; margin-bottom: 4px; }
.ancestor svg { max-width: 360px; height: auto; display: block; }
.ancestor pre { font-size: 0.75em; margin: 0; max-width: 360px; overflow-x: auto; }
nav a { margin-right: 12px; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; }
"""


def esc(x: Any) -> str:
    """Text for HTML (quotes escaped too)."""
    return html.escape("" if x is None else str(x), quote=True)


def fmt(x: Any, spec: str = "") -> str:
    """A value for a table cell: ``-`` for None and NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        return str(x)


def sci(x: Any) -> str:
    """A large count (FLOPs, parameters) in a short form: 3.2e+12, 4,512."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    x = float(x)
    return f"{x:,.0f}" if abs(x) < 1e6 else f"{x:.3g}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: set[int] | None = None,
          row_classes: Sequence[str] | None = None, raw: set[int] | None = None) -> str:
    """An HTML table; cells are escaped unless their column is in ``raw`` (already HTML)."""
    numeric = numeric or set()
    raw = raw or set()
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"]
    for k, row in enumerate(rows):
        cls = row_classes[k] if row_classes and k < len(row_classes) and row_classes[k] else ""
        cells = []
        for j, v in enumerate(row):
            text = str(v) if j in raw else esc(v)
            cells.append(f'<td class="num">{text}</td>' if j in numeric else f"<td>{text}</td>")
        out.append((f'<tr class="{cls}">' if cls else "<tr>") + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def png_img(fig: Any, alt: str, dpi: int = 100) -> str:
    """A matplotlib figure as an ``<img>`` with the PNG inline (base64 data URL)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def section(anchor: str, title: str, body: str, level: int = 2) -> str:
    return f'<section id="{esc(anchor)}"><h{level}>{esc(title)}</h{level}>\n{body}\n</section>'


def page(title: str, body: str, subtitle: str = "") -> str:
    """The whole document: inline style, no script, no external resource."""
    sub = f'<p class="muted">{subtitle}</p>' if subtitle else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            f"<h1>{esc(title)}</h1>\n{sub}\n{body}\n</main>\n</body>\n</html>\n")
