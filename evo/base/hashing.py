"""The one content hash of a genome: SHA-256 of its canonical JSON (``dna_hash`` in fitness.json)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["dna_hash"]


def dna_hash(dna: Any) -> str:
    """``"sha256:<hex>"`` of ``dna`` (a genome's JSON dict) written as canonical, compact JSON."""
    blob = json.dumps(dna, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()
