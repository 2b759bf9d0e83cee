"""Plain-text output of the inspection commands: tables, numbers, mutations (no logic, no I/O)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["count", "fmt", "mutation_text", "sci", "table"]


def fmt(v: Any, spec: str = "") -> str:
    """``v`` formatted with ``spec``; "-" for None."""
    if v is None:
        return "-"
    if spec:
        return format(v, spec)
    return str(v)


def count(n: int, noun: str) -> str:
    """'1 convolution', '2 convolutions'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def table(headers: list[str], rows: list[list[Any]], right: set[int] | None = None) -> str:
    """A plain text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    right = right if right is not None else {
        k for k in range(len(headers)) if rows and all(_isnum(r[k]) for r in rows if r[k] not in (None, "-"))}
    out = []
    for r in cells:
        out.append("  ".join(c.rjust(w) if k in right else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths)))
                   .rstrip())
    return "\n".join(out)


def _isnum(x: Any) -> bool:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return True
    try:
        float(str(x).rstrip("%"))
        return True
    except ValueError:
        return False


def sci(x: Any) -> str:
    """A number in three significant digits ("1.23e+12"); "-" for None."""
    return "-" if x is None else f"{float(x):.3g}"


def mutation_text(m: Any, detail: bool = True) -> str:
    """A mutation record as "NAME (key=value, ...)"."""
    if not isinstance(m, dict):
        return str(m)
    name = str(m.get("name"))
    d = m.get("detail")
    if detail and d:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in d.items()) if isinstance(d, dict) else _short(d)
        name += f" ({inner})"
    return name


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:37] + "..."
