"""String-valued metadata as weights files store it (safetensors headers, ONNX metadata_props)."""

from __future__ import annotations

import json
from typing import Any


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """JSON values decoded where they parse; other strings kept as they are."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            out[key] = value
    return out
