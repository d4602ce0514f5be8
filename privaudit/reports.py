"""Report formats, a registry keyed by `--format`: json (the source of truth), markdown, html, junit.

Every renderer is a pure function from the results document (what `run_mia` returns, with its
"gate" section) to text. The HTML is one self-contained file: inline SVG figures, inline CSS, no
network resources. Markdown and HTML leave out the run's timings and timestamp, so the same run
settings give the same report.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from xml.etree import ElementTree as ET

from .errors import PrivauditError

Renderer = Callable[[dict], str]


def render_json(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _tpr_cell(row: dict) -> str:
    cell = f"{_pct(row['tpr'])} [{_pct(row['ci'][0])}, {_pct(row['ci'][1])}]"
    return cell + " (too few non-members)" if row["too_few_nonmembers"] else cell


def summary_rows(doc: dict) -> list[list[str]]:
    """One row per attack: the figures every format shows."""
    method = doc["settings"]["epsilon_method"]
    rows = []
    for name, a in doc["attacks"].items():
        rows.append(
            [
                name + (" (primary)" if name == doc["primary_attack"] else ""),
                f"{a['auc']:.4f} [{a['auc_ci'][0]:.4f}, {a['auc_ci'][1]:.4f}]",
                *[_tpr_cell(r) for r in a["tpr_at_fpr"]],
                f"{a['balanced_accuracy']:.4f}",
                f"{a['empirical_epsilon'][method]['epsilon']:.3f}",
            ]
        )
    return rows


def summary_header(doc: dict) -> list[str]:
    first = next(iter(doc["attacks"].values()))
    return [
        "attack",
        "AUC [95% CI]",
        *[f"TPR @ FPR {r['fpr']:g}" for r in first["tpr_at_fpr"]],
        "bal. acc.",
        "emp. epsilon (95%)",
    ]


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def _html_table(table_id: str, header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def render_markdown(doc: dict) -> str:
    return _by_kind(doc, mia=_mia_markdown, canary=_canary_markdown, audit=_audit_markdown)


def render_html(doc: dict) -> str:
    titles = {
        "mia": "privaudit membership-inference audit",
        "canary": "privaudit canary audit",
        "audit": "privaudit audit",
    }
    return _page(
        titles.get(str(doc.get("kind")), "privaudit"),
        _by_kind(doc, mia=_mia_html, canary=_canary_html, audit=_audit_html),
    )


def _audit_markdown(doc: dict) -> str:
    lines = ["# privaudit audit", ""]
    lines += [f"- **{line}**" for line in doc["headline"]["lines"]]
    lines += _gate_markdown(doc)
    for section in doc["sections"].values():
        body = _by_kind(section, mia=_mia_markdown, canary=_canary_markdown).split("\n")
        lines += ["", "#" + body[0]] + [("#" + line if line.startswith("## ") else line) for line in body[1:]]
    return "\n".join(lines + [""])


def _audit_html(doc: dict) -> str:
    e = html.escape
    lines = "".join(f"<li>{e(line)}</li>" for line in doc["headline"]["lines"])
    parts = [
        f'<h1>privaudit audit</h1><ul class="headline{" violation" if doc["headline"]["violation"] else ""}" '
        f'id="headline">{lines}</ul>',
        _gate_html(doc),
    ]
    for section in doc["sections"].values():
        parts.append(
            "<section>"
            + _by_kind(section, mia=_mia_html, canary=_canary_html)
            .replace("<h1>", "<h2>")
            .replace("</h1>", "</h2>")
            .replace(' id="', ' id="' + section["kind"] + "-")
            + "</section>"
        )
    return "\n".join(parts)


def _by_kind(doc: dict, **renderers) -> str:
    kind = doc.get("kind")
    if kind not in renderers:
        raise PrivauditError(f"cannot render a result of kind {kind!r}")
    return renderers[kind](doc)


def _gate_markdown(doc: dict) -> list[str]:
    gate = doc.get("gate")
    if not gate or not gate["checks"]:
        return []
    lines = [
        "",
        f"## Gate: {'passed' if gate['passed'] else 'FAILED'}",
        "",
        "| check | value | limit | result |",
        "|---|---|---|---|",
    ]
    return lines + [
        f"| {c['metric']} | {c['value']:.4g} | {c['limit']:g} | {'pass' if c['passed'] else 'FAIL'} |"
        for c in gate["checks"]
    ]


def _gate_html(doc: dict) -> str:
    gate = doc.get("gate")
    if not gate or not gate["checks"]:
        return ""
    e = html.escape
    rows = "".join(
        f'<tr class="{"pass" if c["passed"] else "fail"}"><td>{e(c["metric"])}</td>'
        f"<td>{c['value']:.4g}</td><td>{c['limit']:g}</td>"
        f"<td>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in gate["checks"]
    )
    return (
        f'<h2>Gate: {"passed" if gate["passed"] else "FAILED"}</h2><table id="gate"><tr><th>check</th>'
        f"<th>value</th><th>limit</th><th>result</th></tr>{rows}</table>"
    )


def _vocabulary(doc: dict) -> str:
    return doc["model"].get("vocabulary", "not recorded")


def _mia_markdown(doc: dict) -> str:
    s = doc["audit_set"]
    lines = [
        "# privaudit membership-inference audit",
        "",
        f"**{doc['headline']['text']}**",
        "",
        f"Model: `{doc['model']['arch']}` trained on {doc['model']['data']}; vocabulary "
        f"{_vocabulary(doc)}. Audit set: {s['members']:,} members, "
        f"{s['nonmembers']:,} non-members; {s['shadows']} shadow models. Higher score = more likely a member.",
        "",
        *_md_table(summary_header(doc), summary_rows(doc)),
    ]
    lines += _gate_markdown(doc)
    lines += [
        "",
        f"## Most exposed training members ({doc['primary_attack']})",
        "",
        "| fingerprint | score |" + (" text |" if any("text" in v for v in doc["vulnerable"]) else ""),
        "|---|---|" + ("---|" if any("text" in v for v in doc["vulnerable"]) else ""),
    ]
    for v in doc["vulnerable"]:
        lines.append(f"| `{v['fingerprint']}` | {v['score']:.4g} |" + (f" {v['text']} |" if "text" in v else ""))
    lines += [
        "",
        "Intervals: Clopper-Pearson for rates, bootstrap for AUC. Empirical epsilon: a 95%-confidence "
        "lower bound (threshold chosen with a Bonferroni correction or on a held-apart half).",
        "",
    ]
    return "\n".join(lines)


_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def roc_svg(doc: dict, width: int = 520, height: int = 420) -> str:
    """ROC curves of every attack on log-log axes (the low-FPR region is what matters)."""
    left, right, top, bottom = 60, 150, 20, 50
    n0 = doc["audit_set"]["nonmembers"]
    lo = 10 ** math.floor(math.log10(max(1.0 / max(n0, 1), 1e-5)))
    span = -math.log10(lo)

    def x(v):
        return left + (math.log10(max(v, lo)) + span) / span * (width - left - right)

    def y(v):
        return height - bottom - (math.log10(max(v, lo)) + span) / span * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="ROC curves, log-log">',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="none" stroke="#999"/>',
    ]
    for k in range(int(span) + 1):
        v = lo * 10**k
        parts.append(f'<line x1="{x(v):.1f}" y1="{top}" x2="{x(v):.1f}" y2="{height - bottom}" stroke="#eee"/>')
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - right}" y2="{y(v):.1f}" stroke="#eee"/>')
        parts.append(
            f'<text x="{x(v):.1f}" y="{height - bottom + 16}" font-size="11" text-anchor="middle">{v:g}</text>'
        )
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:g}</text>')
    parts.append(
        f'<line x1="{x(lo):.1f}" y1="{y(lo):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" stroke="#aaa" '
        f'stroke-dasharray="4 3"/>'
    )
    for i, (name, a) in enumerate(doc["attacks"].items()):
        pts = " ".join(f"{x(f):.1f},{y(t):.1f}" for f, t in zip(a["roc"]["fpr"], a["roc"]["tpr"]) if f > 0 and t > 0)
        color = _COLORS[i % len(_COLORS)]
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        parts.append(
            f'<text x="{width - right + 8}" y="{top + 14 + 16 * i}" font-size="12" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    parts.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 12}" font-size="12" text-anchor="middle">'
        f"false positive rate (log)</text>"
    )
    parts.append(
        f'<text x="14" y="{(top + height - bottom) / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + height - bottom) / 2})">true positive rate (log)</text>'
    )
    return "\n".join(parts + ["</svg>"])


def epsilon_svg(doc: dict, width: int = 520) -> str:
    """Empirical epsilon lower bound of every attack next to the theoretical epsilon."""
    method = doc["settings"]["epsilon_method"]
    bars = [(name, a["empirical_epsilon"][method]["epsilon"]) for name, a in doc["attacks"].items()]
    theoretical = doc["theoretical"]["epsilon"] if doc["theoretical"] else None
    top_value = max([b for _, b in bars] + [theoretical or 0, 1e-9]) * 1.15
    left, right, row = 150, 60, 24
    height = 40 + row * len(bars)

    def x(v):
        return left + v / top_value * (width - left - right)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="empirical versus theoretical epsilon">'
    ]
    for i, (name, value) in enumerate(bars):
        yy = 10 + row * i
        parts.append(f'<text x="{left - 6}" y="{yy + 14}" font-size="12" text-anchor="end">{html.escape(name)}</text>')
        parts.append(
            f'<rect x="{left}" y="{yy}" width="{max(x(value) - left, 1):.1f}" height="{row - 6}" fill="#1f77b4"/>'
        )
        parts.append(f'<text x="{x(value) + 4:.1f}" y="{yy + 14}" font-size="11">{value:.2f}</text>')
    if theoretical is not None:
        parts.append(
            f'<line x1="{x(theoretical):.1f}" y1="4" x2="{x(theoretical):.1f}" y2="{height - 22}" '
            f'stroke="#d62728" stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{x(theoretical):.1f}" y="{height - 8}" font-size="11" fill="#d62728" '
            f'text-anchor="middle">theoretical epsilon {theoretical:.2f}</text>'
        )
    else:
        parts.append(
            f'<text x="{left}" y="{height - 8}" font-size="11" fill="#d62728">no theoretical epsilon '
            f"(trained without DP-SGD)</text>"
        )
    return "\n".join(parts + ["</svg>"])


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.headline { font-size: 1.2em; padding: .6em; background: #f4f6fa; border-left: 4px solid #1f77b4; }
.violation { border-left-color: #d62728; background: #fdecea; }
.fail td { background: #fdecea; } .figures { display: flex; flex-wrap: wrap; gap: 2em; }
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        f"<style>{_STYLE}</style></head><body>\n{body}</body></html>\n"
    )


def _mia_html(doc: dict) -> str:
    e = html.escape
    s = doc["audit_set"]
    gate_html = _gate_html(doc)
    text_header = "<th>text</th>" if any("text" in v for v in doc["vulnerable"]) else ""
    vulnerable = "".join(
        f"<tr><td><code>{e(v['fingerprint'])}</code></td><td>{v['score']:.4g}</td>"
        + (f"<td>{e(v['text'])}</td>" if "text" in v else "")
        + "</tr>"
        for v in doc["vulnerable"]
    )
    return f"""<h1>privaudit membership-inference audit</h1>
<p class="headline{" violation" if doc["headline"]["violation"] else ""}" id="headline">{e(doc["headline"]["text"])}</p>
<p>Model <code>{e(doc["model"]["arch"])}</code> trained on {e(doc["model"]["data"])};
vocabulary {e(_vocabulary(doc))}. Audit set: {s["members"]:,} members, {s["nonmembers"]:,} non-members; {s["shadows"]} shadow models. Higher score = more likely a member.</p>
{_html_table("summary", summary_header(doc), summary_rows(doc))}
{gate_html}
<div class="figures"><figure><figcaption>Empirical epsilon (95% lower bound) vs theoretical epsilon</figcaption>
{epsilon_svg(doc)}</figure>
<figure><figcaption>ROC curves, log-log</figcaption>{roc_svg(doc)}</figure></div>
<h2>Most exposed training members ({e(doc["primary_attack"])})</h2>
<table id="vulnerable"><tr><th>fingerprint</th><th>score</th>{text_header}</tr>{vulnerable}</table>
<p>Intervals: Clopper-Pearson for rates, bootstrap for AUC. Empirical epsilon: a 95%-confidence lower bound.
privaudit {e(doc["versions"].get("privaudit", ""))}.</p>
"""


def canary_header() -> list[str]:
    return [
        "repeat",
        "canaries",
        "exposure mean / max (bits)",
        "enumeration top-1",
        "ModIvA (alphabet)",
        "+ swaps",
        "ModIvA (vocabulary)",
        "+ swaps",
        "position acc. (alphabet)",
        "median relaxed rank",
        "chance",
    ]


def canary_rows(doc: dict) -> list[list[str]]:
    rows = []
    for g in doc["by_repeat"]:
        a, v = g["modiva_alphabet"], g["modiva_vocab"]
        rows.append(
            [
                str(g["repeat"]),
                str(g["canaries"]),
                f"{g['exposure_mean']:.2f} / {g['exposure_max']:.2f}",
                _pct(g["enumeration_top1_rate"]),
                _pct(a["extraction_rate"]),
                _pct(a["swap_extraction_rate"]),
                _pct(v["extraction_rate"]),
                _pct(v["swap_extraction_rate"]),
                _pct(a["position_accuracy"]),
                "-" if a["median_relaxed_rank"] is None else f"{a['median_relaxed_rank']:g}",
                f"{g['chance']:.2g}",
            ]
        )
    return rows


def onerun_header() -> list[str]:
    return ["one-run audit", "canaries", "Steinke et al. eps", "f-DP (Gaussian) eps [mu]", "guesses right"]


def onerun_rows(doc: dict) -> list[list[str]]:
    """The one-run epsilon bounds, each at 95%, next to each other (theoretical epsilon in the headline)."""

    def row(name, audit, canaries):
        s, g = audit["steinke"], audit["gdp"]
        return [
            name,
            str(canaries),
            f"{s['epsilon']:.2f}",
            f"{g['epsilon']:.2f} [{g['mu']:.2f}]",
            f"{s['correct']} / {s['guesses']}",
        ]

    rows = []
    white = doc.get("whitebox")
    if white is not None:
        rows.append(row("white-box, every step observed", white["every_step"], white["canaries"]))
        rows.append(row("white-box, final weights only", white["final_weights"], white["canaries"]))
    if doc.get("one_run") is not None:
        rows.append(row("black-box text canaries, final model", doc["one_run"], doc["one_run"]["canaries"]))
    return rows


def sampling_line(doc: dict) -> str:
    """The white-box audit's implementation checks, in one sentence each."""
    white = doc.get("whitebox")
    if white is None:
        return ""
    check, noise = white["sampling"], white["noise"]
    verdict = "consistent with" if check["passed"] else "NOT consistent with"
    fresh = "fresh at every step" if noise["passed"] else "NOT fresh"
    return (
        f"Sampling check: included gradient canaries were sampled {check['mean_count']:.2f} times on average "
        f"(Poisson sampling expects {check['expected_count']:.2f}), dispersion {check['dispersion']:.2f} "
        f"(1 expected), p = {check['p_value']:.2g}: {verdict} the Poisson sampling the accountant assumes. "
        f"Noise check: consecutive steps' observed noise correlates {noise['correlation']:.3f}: {fresh}. "
        f"Noise the adversary measured: {white['observed_noise']:.3f} x the clipping norm."
    )


def _canary_intro(doc: dict) -> str:
    t = doc["template"]
    return (
        f"Template '{t['text']}' ({t['space_size']:,} possible secrets), model `{doc['model']['arch']}` trained on "
        f"{doc['model']['data']} plus the canaries ({doc['decoys']} decoys); vocabulary {_vocabulary(doc)}. "
        f"Exposure of a secret the model "
        f"never saw: about 1.44 bits. Extraction = the exact secret read out; enumeration top-1 = the true secret is "
        f"the exact maximiser of the objective all the attacks optimise."
    )


def _canary_markdown(doc: dict) -> str:
    lines = [
        "# privaudit canary audit",
        "",
        f"**{doc['headline']['text']}**",
        "",
        _canary_intro(doc),
        "",
        *_md_table(canary_header(), canary_rows(doc)),
        "",
        *_md_table(onerun_header(), onerun_rows(doc)),
    ]
    if sampling_line(doc):
        lines += ["", sampling_line(doc)]
    lines += _gate_markdown(doc)
    return "\n".join(lines + [""])


def canary_svg(doc: dict, width: int = 520, height: int = 300) -> str:
    """Mean exposure (bits, left axis) and extraction rates (right axis) against the repeat count."""
    groups = doc["by_repeat"]
    left, right, top, bottom = 50, 150, 20, 40
    space_bits = math.log2(doc["template"]["space_size"])
    xs = [g["repeat"] for g in groups]
    lo, hi = math.log2(min(xs)), math.log2(max(xs)) if max(xs) > min(xs) else math.log2(min(xs)) + 1

    def x(r):
        return left + (math.log2(r) - lo) / (hi - lo) * (width - left - right)

    def y(frac):
        return height - bottom - frac * (height - top - bottom)

    series = [
        ("mean exposure / max bits", [g["exposure_mean"] / space_bits for g in groups], "#1f77b4"),
        ("enumeration top-1", [g["enumeration_top1_rate"] for g in groups], "#7f7f7f"),
        ("ModIvA (alphabet)", [g["modiva_alphabet"]["extraction_rate"] for g in groups], "#d62728"),
        ("ModIvA + swaps", [g["modiva_alphabet"]["swap_extraction_rate"] for g in groups], "#2ca02c"),
    ]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="exposure and extraction against repeat count">',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        f'fill="none" stroke="#999"/>',
    ]
    for frac in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<text x="{left - 6}" y="{y(frac) + 4:.1f}" font-size="11" text-anchor="end">{frac:g}</text>')
    for r in xs:
        parts.append(f'<text x="{x(r):.1f}" y="{height - bottom + 16}" font-size="11" text-anchor="middle">{r}</text>')
    for i, (name, values, color) in enumerate(series):
        pts = " ".join(f"{x(r):.1f},{y(v):.1f}" for r, v in zip(xs, values))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [f'<circle cx="{x(r):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>' for r, v in zip(xs, values)]
        parts.append(
            f'<text x="{width - right + 8}" y="{top + 14 + 16 * i}" font-size="12" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    parts.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 8}" font-size="12" text-anchor="middle">'
        f"times each canary was inserted</text>"
    )
    return "\n".join(parts + ["</svg>"])


def _canary_html(doc: dict) -> str:
    e = html.escape
    return f"""<h1>privaudit canary audit</h1>
<p class="headline{" violation" if doc["headline"]["violation"] else ""}" id="headline">{e(doc["headline"]["text"])}</p>
<p>{e(_canary_intro(doc))}</p>
{_html_table("summary", canary_header(), canary_rows(doc))}
{_html_table("onerun", onerun_header(), onerun_rows(doc))}
<p id="sampling">{e(sampling_line(doc))}</p>
{_gate_html(doc)}
<figure><figcaption>Exposure (as a fraction of the secret's bits) and extraction rate by repeat count</figcaption>
{canary_svg(doc)}</figure>
<p>privaudit {e(doc["versions"].get("privaudit", ""))}.</p>
"""


def render_junit(doc: dict) -> str:
    """One test case per gate threshold, so any CI shows which held and which did not."""
    checks = (doc.get("gate") or {}).get("checks", [])
    suite = ET.Element(
        "testsuite",
        name="privaudit",
        tests=str(len(checks)),
        failures=str(sum(not c["passed"] for c in checks)),
        errors="0",
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"privaudit.{doc['kind']}", name=c["metric"])
        if not c["passed"]:
            ET.SubElement(case, "failure", message=f"{c['metric']} = {c['value']:.4g} exceeds {c['limit']:g}")
    ET.SubElement(suite, "system-out").text = doc["headline"]["text"]
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


FORMATS: dict[str, Renderer] = {
    "json": render_json,
    "markdown": render_markdown,
    "html": render_html,
    "junit": render_junit,
}


def render(doc: dict, fmt: str) -> str:
    if fmt not in FORMATS:
        raise PrivauditError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return FORMATS[fmt](doc)
