"""The html format: one self-contained page (inline CSS and SVG, no network resource). An audit's
sections are rendered a heading level down, their element ids prefixed with the section's kind."""

from __future__ import annotations

from html import escape
from typing import Any

from privaudit.errors import PrivauditError

from . import tables
from .svg import (
    canary_svg,
    epsilon_svg,
    roc_svg,
    sweep_accuracy_svg,
    sweep_epsilon_svg,
    sweep_exposure_svg,
    sweep_tpr_svg,
)

Doc = dict[str, Any]

TITLES = {
    "mia": "privaudit membership-inference audit",
    "canary": "privaudit canary audit",
    "sweep": "privaudit privacy / utility / leakage sweep",
    "audit": "privaudit audit",
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.headline { font-size: 1.2em; padding: .6em; background: #f4f6fa; border-left: 4px solid #1f77b4; }
.violation { border-left-color: #d62728; background: #fdecea; }
.fail td { background: #fdecea; } .figures { display: flex; flex-wrap: wrap; gap: 2em; }
.figures figure { margin: 0; }
"""


def render_html(doc: Doc) -> str:
    kind = str(doc.get("kind"))
    body = _audit(doc) if kind == "audit" else _section(doc, level=1, ids="")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(TITLES.get(kind, "privaudit"))}'
        f"</title>\n<style>{STYLE}</style></head><body>\n{body}</body></html>\n"
    )


def html_table(table_id: str, header: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        (f'<tr class="{row_classes[i]}">' if row_classes else "<tr>")
        + "".join(f"<td>{escape(c)}</td>" for c in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f'<table id="{escape(table_id)}"><tr>{head}</tr>{body}</table>'


def _section(doc: Doc, level: int, ids: str) -> str:
    if doc.get("kind") == "mia":
        return _mia(doc, level, ids)
    if doc.get("kind") == "canary":
        return _canary(doc, level, ids)
    if doc.get("kind") == "sweep":
        return _sweep(doc, level, ids)
    raise PrivauditError(f"cannot render a result of kind {doc.get('kind')!r}")


def _headline(doc: Doc, ids: str) -> str:
    violation = " violation" if doc["headline"]["violation"] else ""
    return f'<p class="headline{violation}" id="{ids}headline">{escape(doc["headline"]["text"])}</p>'


def _gate(doc: Doc, level: int, ids: str) -> str:
    header, rows = tables.gate_table(doc)
    if not rows:
        return ""
    classes = ["pass" if row[-1] == "pass" else "fail" for row in rows]
    return f"<h{level}>Gate: {tables.gate_verdict(doc)}</h{level}>" + html_table(f"{ids}gate", header, rows, classes)


def _audit(doc: Doc) -> str:
    violation = " violation" if doc["headline"]["violation"] else ""
    lines = "".join(f"<li>{escape(line)}</li>" for line in doc["headline"]["lines"])
    parts = [f'<h1>privaudit audit</h1><ul class="headline{violation}" id="headline">{lines}</ul>', _gate(doc, 2, "")]
    parts += [f"<section>{_section(s, level=2, ids=s['kind'] + '-')}</section>" for s in doc["sections"].values()]
    return "\n".join(parts)


def _mia(doc: Doc, level: int, ids: str) -> str:
    s = doc["audit_set"]
    header, rows = tables.vulnerable_table(doc)
    return f"""<h{level}>privaudit membership-inference audit</h{level}>
{_headline(doc, ids)}
<p>Model <code>{escape(doc["model"]["arch"])}</code> trained on {escape(doc["model"]["data"])};
vocabulary {escape(tables.vocabulary(doc))}. Audit set: {s["members"]:,} members, {s["nonmembers"]:,} non-members;
{s["shadows"]} shadow models. Higher score = more likely a member.</p>
{html_table(f"{ids}summary", tables.summary_header(doc), tables.summary_rows(doc))}
{"".join(f"<p>{escape(note)}</p>" for note in tables.mia_notes(doc))}
{_gate(doc, level + 1, ids)}
<div class="figures"><figure><figcaption>Empirical epsilon (95% lower bound) vs theoretical epsilon</figcaption>
{epsilon_svg(doc)}</figure>
<figure><figcaption>ROC curves, log-log</figcaption>{roc_svg(doc)}</figure></div>
<h{level + 1}>Most exposed training members ({escape(doc["primary_attack"])})</h{level + 1}>
{html_table(f"{ids}vulnerable", header, rows)}
<p>{escape(tables.MIA_FOOTNOTE)} privaudit {escape(doc["versions"].get("privaudit", ""))}.</p>
"""


def _canary(doc: Doc, level: int, ids: str) -> str:
    return f"""<h{level}>privaudit canary audit</h{level}>
{_headline(doc, ids)}
<p>{escape(tables.canary_intro(doc))}</p>
{html_table(f"{ids}summary", tables.canary_header(), tables.canary_rows(doc))}
{html_table(f"{ids}onerun", tables.onerun_header(), tables.onerun_rows(doc))}
<p id="{ids}sampling">{escape(tables.sampling_line(doc))}</p>
{_gate(doc, level + 1, ids)}
<figure><figcaption>Exposure (as a fraction of the secret's bits) and extraction rate by repeat count</figcaption>
{canary_svg(doc)}</figure>
<p>privaudit {escape(doc["versions"].get("privaudit", ""))}.</p>
"""


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>"


def _sweep(doc: Doc, level: int, ids: str) -> str:
    figures = [
        _figure("Held-out accuracy (95% intervals) against epsilon", sweep_accuracy_svg(doc)),
        _figure("Empirical epsilon (95% lower bound) against theoretical epsilon", sweep_epsilon_svg(doc)),
        _figure(f"TPR at low FPR ({doc['settings']['attack']}, 95% intervals) against epsilon", sweep_tpr_svg(doc)),
    ]
    if doc["settings"]["canary"] is not None:
        figures.append(_figure("Mean canary exposure against epsilon", sweep_exposure_svg(doc)))
    worst = "".join(f"<li>{escape(line)}</li>" for line in tables.worst_off_lines(doc))
    return f"""<h{level}>privaudit privacy / utility / leakage sweep</h{level}>
{_headline(doc, ids)}
<p>Model <code>{escape(doc["recipe"]["arch"])}</code> on {escape(doc["data"])};
{doc["settings"]["shadows"]} shadow models per epsilon.</p>
{html_table(f"{ids}points", tables.sweep_header(doc), tables.sweep_rows(doc))}
<div class="figures">{"".join(figures)}</div>
{_gate(doc, level + 1, ids)}
<h{level + 1}>By {escape(doc["group_col"])}</h{level + 1}>
<ul id="{ids}worst">{worst}</ul>
{html_table(f"{ids}groups", tables.group_header(doc), tables.group_rows(doc))}
<p>{escape(tables.SWEEP_FOOTNOTE)} privaudit {escape(doc["versions"].get("privaudit", ""))}.</p>
"""
