"""The json format: the results document itself (what results.json holds), as strict JSON."""

from __future__ import annotations

import json
import math
from typing import Any


def strict(value: Any) -> Any:
    """`value` with every non-finite float replaced: JSON has no infinity or NaN (Python would write the
    non-standard `Infinity`, which a browser's or jq's parser refuses). inf -> "inf" (float() reads it
    back), NaN -> null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(strict(doc), indent=1, allow_nan=False) + "\n"
