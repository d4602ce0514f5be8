"""The markdown format (GitHub-flavoured): headline, tables, gate; an audit nests its sections a level down."""

from __future__ import annotations

import html
from typing import Any

from privaudit.errors import PrivauditError

from . import tables

Doc = dict[str, Any]


def render_markdown(doc: Doc) -> str:
    kind = doc.get("kind")
    if kind == "audit":
        return _audit(doc)
    return _section(doc, level=1)


def md_text(text: str) -> str:
    """User text (data, labels, file names, templates) as inert Markdown: many viewers render raw HTML, so
    a training text holding `<script>` must arrive as characters, not markup."""
    return html.escape(text, quote=False)


def md_cell(text: str) -> str:
    """A table cell: also a `|` would end the cell and a line break the row, so both are escaped."""
    return md_text(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(map(md_cell, header)) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(map(md_cell, row)) + " |" for row in rows
    ]


def _section(doc: Doc, level: int) -> str:
    if doc.get("kind") == "mia":
        return _mia(doc, level)
    if doc.get("kind") == "canary":
        return _canary(doc, level)
    if doc.get("kind") == "sweep":
        return _sweep(doc, level)
    raise PrivauditError(f"cannot render a result of kind {doc.get('kind')!r}")


def _audit(doc: Doc) -> str:
    lines = ["# privaudit audit", ""]
    lines += [f"- **{md_text(line)}**" for line in doc["headline"]["lines"]]
    lines += _gate(doc, level=2)
    for section in doc["sections"].values():
        lines += ["", _section(section, level=2).rstrip("\n")]
    return "\n".join(lines + [""])


def _gate(doc: Doc, level: int) -> list[str]:
    header, rows = tables.gate_table(doc)
    if not rows:
        return []
    return ["", f"{'#' * level} Gate: {tables.gate_verdict(doc)}", "", *md_table(header, rows)]


def _mia(doc: Doc, level: int) -> str:
    s = doc["audit_set"]
    h = "#" * level
    lines = [
        f"{h} privaudit membership-inference audit",
        "",
        f"**{md_text(doc['headline']['text'])}**",
        "",
        f"Model: `{doc['model']['arch']}` trained on {md_text(doc['model']['data'])}; vocabulary "
        f"{tables.vocabulary(doc)}. Audit set: {s['members']:,} members, "
        f"{s['nonmembers']:,} non-members; {s['shadows']} shadow models. Higher score = more likely a member.",
        "",
        *md_table(tables.summary_header(doc), tables.summary_rows(doc)),
        *(["", *[f"- {md_text(note)}" for note in tables.mia_notes(doc)]] if tables.mia_notes(doc) else []),
    ]
    lines += _gate(doc, level + 1)
    header, rows = tables.vulnerable_table(doc)
    rows = [[f"`{row[0]}`", *row[1:]] for row in rows]
    lines += ["", f"{h}# Most exposed training members ({doc['primary_attack']})", "", *md_table(header, rows)]
    lines += ["", tables.MIA_FOOTNOTE, ""]
    return "\n".join(lines)


def _canary(doc: Doc, level: int) -> str:
    lines = [
        f"{'#' * level} privaudit canary audit",
        "",
        f"**{md_text(doc['headline']['text'])}**",
        "",
        md_text(tables.canary_intro(doc)),
        "",
        *md_table(tables.canary_header(), tables.canary_rows(doc)),
        "",
        *md_table(tables.onerun_header(), tables.onerun_rows(doc)),
    ]
    if tables.sampling_line(doc):
        lines += ["", tables.sampling_line(doc)]
    lines += _gate(doc, level + 1)
    return "\n".join(lines + [""])


def _sweep(doc: Doc, level: int) -> str:
    h = "#" * level
    lines = [
        f"{h} privaudit privacy / utility / leakage sweep",
        "",
        f"**{md_text(doc['headline']['text'])}**",
        "",
        f"Model: `{doc['recipe']['arch']}` on {md_text(doc['data'])}; {doc['settings']['shadows']} shadow models "
        "per epsilon.",
        "",
        *md_table(tables.sweep_header(doc), tables.sweep_rows(doc)),
    ]
    lines += _gate(doc, level + 1)
    lines += ["", f"{h}# By {md_text(doc['group_col'])}", ""]
    lines += [f"- {md_text(line)}" for line in tables.worst_off_lines(doc)]
    lines += ["", *md_table(tables.group_header(doc), tables.group_rows(doc)), "", tables.SWEEP_FOOTNOTE, ""]
    return "\n".join(lines)
