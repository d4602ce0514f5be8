"""Report formats, a registry keyed by `--format`: json (the source of truth), markdown, html, junit.

Every renderer is a pure function from a results document (a result's `to_dict()`, as results.json
holds it: reports can be rendered again from the file) to text. One module per format:

- `tables`: the rows and headers every format (and the terminal) shows, per audit kind;
- `markdown`, `html` (with `svg`, the figures built as XML elements), `junit`, `jsondoc`.

Each renderer handles the kinds "mia", "canary", "sweep" and "audit" (which holds one section per kind).
The HTML is one self-contained file: inline SVG figures, inline CSS, no network resources. Markdown and
HTML leave out the run's timings and timestamp, so the same run settings give the same report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from privaudit.errors import PrivauditError

from .html import render_html
from .jsondoc import render_json
from .junit import render_junit
from .markdown import render_markdown

Renderer = Callable[[dict[str, Any]], str]

FORMATS: dict[str, Renderer] = {
    "json": render_json,
    "markdown": render_markdown,
    "html": render_html,
    "junit": render_junit,
}


def render(doc: dict[str, Any], fmt: str) -> str:
    if fmt not in FORMATS:
        raise PrivauditError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return FORMATS[fmt](doc)


__all__ = ["FORMATS", "Renderer", "render"]
