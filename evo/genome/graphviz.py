"""Render DOT text (any search space's ``space.draw``) to an image with Graphviz ``dot``; pure Python."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["render"]


def render(dot_source: str, path: str | Path) -> Path:
    """Render DOT to ``path`` (format from its suffix: .png, .svg, .pdf) with Graphviz ``dot``."""
    path = Path(path)
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError("Graphviz `dot` is not installed (apt-get install graphviz, or conda install graphviz); "
                           "write .dot instead and render it elsewhere")
    fmt = path.suffix.lstrip(".") or "png"
    subprocess.run([exe, f"-T{fmt}", "-o", str(path)], input=dot_source.encode(), check=True,
                   capture_output=True)
    return path
