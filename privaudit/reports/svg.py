"""The report's figures, built as SVG element trees (xml.etree) and serialised once: names and numbers
are element text and attributes, escaped by the serialiser, never spliced into markup."""

from __future__ import annotations

import math
from typing import Any
from xml.etree import ElementTree as ET

Doc = dict[str, Any]
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


class Figure:
    """An <svg> element with helpers for the few shapes the reports draw; `str()` serialises it."""

    def __init__(self, width: float, height: float, label: str):
        self.root = ET.Element(
            "svg", xmlns="http://www.w3.org/2000/svg", width=_n(width), height=_n(height), role="img"
        )
        self.root.set("aria-label", label)

    def add(self, tag: str, text: str | None = None, **attributes: Any) -> ET.Element:
        element = ET.SubElement(self.root, tag, {k.replace("_", "-"): _n(v) for k, v in attributes.items()})
        element.text = text
        return element

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str, **more: Any) -> None:
        self.add("line", x1=x1, y1=y1, x2=x2, y2=y2, stroke=stroke, **more)

    def text(self, x: float, y: float, text: str, size: int = 11, **more: Any) -> None:
        self.add("text", text, x=x, y=y, font_size=size, **more)

    def polyline(self, points: list[tuple[float, float]], color: str, width: float) -> None:
        self.add(
            "polyline",
            points=" ".join(f"{x:.1f},{y:.1f}" for x, y in points),
            fill="none",
            stroke=color,
            stroke_width=width,
        )

    def __str__(self) -> str:
        return ET.tostring(self.root, encoding="unicode")


def _n(value: Any) -> str:
    """Attribute text: numbers to one decimal (pixels), anything else as is."""
    if isinstance(value, float):
        return f"{value:.1f}".removesuffix(".0")
    return str(value)


def roc_svg(doc: Doc, width: int = 520, height: int = 420) -> str:
    """ROC curves of every attack on log-log axes (the low-FPR region is what matters)."""
    left, right, top, bottom = 60, 150, 20, 50
    n0 = doc["audit_set"]["nonmembers"]
    lo = 10 ** math.floor(math.log10(max(1.0 / max(n0, 1), 1e-5)))
    span = -math.log10(lo)

    def x(v: float) -> float:
        return left + (math.log10(max(v, lo)) + span) / span * (width - left - right)

    def y(v: float) -> float:
        return height - bottom - (math.log10(max(v, lo)) + span) / span * (height - top - bottom)

    fig = Figure(width, height, "ROC curves, log-log")
    fig.add("rect", x=left, y=top, width=width - left - right, height=height - top - bottom, fill="none", stroke="#999")
    for k in range(int(span) + 1):
        v = lo * 10**k
        fig.line(x(v), top, x(v), height - bottom, "#eee")
        fig.line(left, y(v), width - right, y(v), "#eee")
        fig.text(x(v), height - bottom + 16, f"{v:g}", text_anchor="middle")
        fig.text(left - 6, y(v) + 4, f"{v:g}", text_anchor="end")
    fig.line(x(lo), y(lo), x(1), y(1), "#aaa", stroke_dasharray="4 3")
    for i, (name, a) in enumerate(doc["attacks"].items()):
        color = COLORS[i % len(COLORS)]
        points = [(x(f), y(t)) for f, t in zip(a["roc"]["fpr"], a["roc"]["tpr"]) if f > 0 and t > 0]
        fig.polyline(points, color, 1.6)
        fig.text(width - right + 8, top + 14 + 16 * i, name, size=12, fill=color)
    fig.text((left + width - right) / 2, height - 12, "false positive rate (log)", size=12, text_anchor="middle")
    middle = (top + height - bottom) / 2
    fig.text(
        14, middle, "true positive rate (log)", size=12, text_anchor="middle", transform=f"rotate(-90 14 {middle})"
    )
    return str(fig)


def epsilon_svg(doc: Doc, width: int = 520) -> str:
    """Empirical epsilon lower bound of every attack next to the theoretical epsilon."""
    method = doc["settings"]["epsilon_method"]
    bars = [(name, a["empirical_epsilon"][method]["epsilon"]) for name, a in doc["attacks"].items()]
    theoretical = doc["theoretical"]["epsilon"] if doc["theoretical"] else None
    top_value = max([b for _, b in bars] + [theoretical or 0, 1e-9]) * 1.15
    left, right, row = 150, 60, 24
    height = 40 + row * len(bars)

    def x(v: float) -> float:
        return left + v / top_value * (width - left - right)

    fig = Figure(width, height, "empirical versus theoretical epsilon")
    for i, (name, value) in enumerate(bars):
        yy = 10 + row * i
        fig.text(left - 6, yy + 14, name, size=12, text_anchor="end")
        fig.add("rect", x=left, y=yy, width=max(x(value) - left, 1.0), height=row - 6, fill="#1f77b4")
        fig.text(x(value) + 4, yy + 14, f"{value:.2f}")
    if theoretical is not None:
        fig.line(x(theoretical), 4, x(theoretical), height - 22, "#d62728", stroke_width=2)
        fig.text(
            x(theoretical), height - 8, f"theoretical epsilon {theoretical:.2f}", fill="#d62728", text_anchor="middle"
        )
    else:
        fig.text(left, height - 8, "no theoretical epsilon (trained without DP-SGD)", fill="#d62728")
    return str(fig)


def canary_svg(doc: Doc, width: int = 520, height: int = 300) -> str:
    """Mean exposure (as a fraction of the secret's bits) and extraction rates against the repeat count."""
    groups = doc["by_repeat"]
    left, right, top, bottom = 50, 150, 20, 40
    space_bits = math.log2(doc["template"]["space_size"])
    xs = [g["repeat"] for g in groups]
    lo, hi = math.log2(min(xs)), math.log2(max(xs)) if max(xs) > min(xs) else math.log2(min(xs)) + 1

    def x(r: float) -> float:
        return left + (math.log2(r) - lo) / (hi - lo) * (width - left - right)

    def y(frac: float) -> float:
        return height - bottom - frac * (height - top - bottom)

    series = [
        ("mean exposure / max bits", [g["exposure_mean"] / space_bits for g in groups], "#1f77b4"),
        ("enumeration top-1", [g["enumeration_top1"]["rate"] for g in groups], "#7f7f7f"),
    ]
    if all(g["modiva_alphabet"] is not None for g in groups):  # None: ModIvA not applicable (black-box)
        series.append(("ModIvA (alphabet)", [g["modiva_alphabet"]["extraction"]["rate"] for g in groups], "#d62728"))
        series.append(("ModIvA + swaps", [g["modiva_alphabet"]["swap_extraction"]["rate"] for g in groups], "#2ca02c"))
    if all(g["calibrated_top1"] is not None for g in groups):
        series.append(("calibrated top-1", [g["calibrated_top1"]["rate"] for g in groups], "#9467bd"))
    fig = Figure(width, height, "exposure and extraction against repeat count")
    fig.add("rect", x=left, y=top, width=width - left - right, height=height - top - bottom, fill="none", stroke="#999")
    for frac in (0, 0.25, 0.5, 0.75, 1):
        fig.text(left - 6, y(frac) + 4, f"{frac:g}", text_anchor="end")
    for r in xs:
        fig.text(x(r), height - bottom + 16, str(r), text_anchor="middle")
    for i, (name, values, color) in enumerate(series):
        fig.polyline([(x(r), y(v)) for r, v in zip(xs, values)], color, 2)
        for r, v in zip(xs, values):
            fig.add("circle", cx=x(r), cy=y(v), r=3, fill=color)
        fig.text(width - right + 8, top + 14 + 16 * i, name, size=12, fill=color)
    fig.text((left + width - right) / 2, height - 8, "times each canary was inserted", size=12, text_anchor="middle")
    return str(fig)


# The sweep ("sweep"): one point per epsilon.

Series = tuple[str, str, list[float | None], list[tuple[float, float]] | None]  # name, color, values, intervals


def category_chart(
    label: str, x_labels: list[str], series: list[Series], y_title: str, y_max: float, width: int = 520
) -> str:
    """Values (with 95% intervals as whiskers, where given) over evenly spaced categories: the epsilons
    swept, in order, "no DP" last. A None value (not measured) is left out."""
    height, left, right, top, bottom = 300, 55, 170, 20, 45
    step = (width - left - right) / max(len(x_labels), 1)

    def x(i: int) -> float:
        return left + step * (i + 0.5)

    def y(v: float) -> float:
        return height - bottom - min(v, y_max) / y_max * (height - top - bottom)

    fig = Figure(width, height, label)
    fig.add("rect", x=left, y=top, width=width - left - right, height=height - top - bottom, fill="none", stroke="#999")
    for k in range(5):
        v = y_max * k / 4
        fig.line(left, y(v), width - right, y(v), "#eee")
        fig.text(left - 6, y(v) + 4, f"{v:.3g}", text_anchor="end")
    for i, name in enumerate(x_labels):
        fig.text(x(i), height - bottom + 16, name, text_anchor="middle")
    for n, (name, color, values, intervals) in enumerate(series):
        shown = [(i, v) for i, v in enumerate(values) if v is not None]
        fig.polyline([(x(i), y(v)) for i, v in shown], color, 2)
        for i, v in shown:
            fig.add("circle", cx=x(i), cy=y(v), r=3, fill=color)
            if intervals is not None:
                lo, hi = intervals[i]
                fig.line(x(i) + 2 * n - 2, y(lo), x(i) + 2 * n - 2, y(hi), color, stroke_width=1.2)
        fig.text(width - right + 8, top + 14 + 16 * n, name, size=12, fill=color)
    fig.text((left + width - right) / 2, height - 8, "epsilon (target of DP-SGD)", size=12, text_anchor="middle")
    middle = (top + height - bottom) / 2
    fig.text(14, middle, y_title, size=12, text_anchor="middle", transform=f"rotate(-90 14 {middle})")
    return str(fig)


def _labels(doc: Doc) -> list[str]:
    return [p["label"] for p in doc["points"]]


def sweep_accuracy_svg(doc: Doc) -> str:
    points = doc["points"]
    worst = []
    for p in points:
        measured = [g["accuracy"]["rate"] for g in p["groups"] if not g["too_small"]]
        worst.append(min(measured) if measured else None)
    series: list[Series] = [
        (
            "held-out accuracy",
            COLORS[0],
            [p["heldout_accuracy"]["rate"] for p in points],
            [tuple(p["heldout_accuracy"]["interval"]) for p in points],
        ),
        ("worst group's", COLORS[1], worst, None),
        ("training accuracy", COLORS[7], [p["train_accuracy"] for p in points], None),
    ]
    return category_chart("held-out accuracy against epsilon", _labels(doc), series, "accuracy", 1.0)


def sweep_tpr_svg(doc: Doc) -> str:
    series: list[Series] = []
    top = 0.0
    for n, fpr in enumerate((0.001, 0.01)):
        rows = [next(r for r in p["tpr_at_fpr"] if abs(r["fpr"] - fpr) < 1e-12) for p in doc["points"]]
        top = max([top, *(r["ci"][1] for r in rows)])
        series.append((f"TPR @ FPR {fpr:g}", COLORS[2 + n], [r["tpr"] for r in rows], [tuple(r["ci"]) for r in rows]))
    y_max = max(0.02, top * 1.1)
    return category_chart("TPR at low FPR against epsilon", _labels(doc), series, "true positive rate", y_max)


def sweep_exposure_svg(doc: Doc) -> str:
    points = doc["points"]
    repeats = [g["repeat"] for g in points[0]["canary"]["by_repeat"]]
    bits = points[0]["canary"]["space_bits"]
    series: list[Series] = [
        (
            f"inserted {r}x",
            COLORS[k % len(COLORS)],
            [p["canary"]["by_repeat"][k]["exposure_mean"] for p in points],
            None,
        )
        for k, r in enumerate(repeats)
    ]
    return category_chart("mean canary exposure against epsilon", _labels(doc), series, "mean exposure (bits)", bits)


def sweep_epsilon_svg(doc: Doc, width: int = 520, height: int = 320) -> str:
    """Empirical epsilon (95% lower bound) against theoretical epsilon on the same scale, with the diagonal
    no DP model may cross; the model without DP-SGD (no theoretical epsilon) in a column of its own."""
    left, right, top, bottom, column = 55, 150, 20, 45, 60
    dp = [p for p in doc["points"] if p["theoretical_epsilon"] is not None]
    plain = [p for p in doc["points"] if p["theoretical_epsilon"] is None]
    x_max = max([p["theoretical_epsilon"] for p in dp] + [1.0]) * 1.1
    y_max = max([x_max] + [p["empirical_epsilon"] * 1.1 for p in doc["points"]])
    plot_right = width - right - (column if plain else 0)

    def x(v: float) -> float:
        return left + v / x_max * (plot_right - left)

    def y(v: float) -> float:
        return height - bottom - v / y_max * (height - top - bottom)

    fig = Figure(width, height, "empirical epsilon against theoretical epsilon")
    fig.add("rect", x=left, y=top, width=plot_right - left, height=height - top - bottom, fill="none", stroke="#999")
    for k in range(5):
        fig.text(left - 6, y(y_max * k / 4) + 4, f"{y_max * k / 4:.3g}", text_anchor="end")
        fig.text(x(x_max * k / 4), height - bottom + 16, f"{x_max * k / 4:.3g}", text_anchor="middle")
    fig.line(x(0), y(0), x(min(x_max, y_max)), y(min(x_max, y_max)), "#d62728", stroke_dasharray="4 3")
    fig.text(width - right + 8, top + 14, "empirical = theoretical", size=12, fill="#d62728")
    fig.text(width - right + 8, top + 30, "95% lower bounds", size=12, fill=COLORS[0])
    for p in dp:
        fig.add("circle", cx=x(p["theoretical_epsilon"]), cy=y(p["empirical_epsilon"]), r=4, fill=COLORS[0])
        fig.text(x(p["theoretical_epsilon"]) + 6, y(p["empirical_epsilon"]) - 6, p["label"], size=10)
    if plain:
        fig.line(plot_right + column, top, plot_right + column, height - bottom, "#999")
        fig.line(plot_right, height - bottom, plot_right + column, height - bottom, "#999")
    for p in plain:
        cx = plot_right + column / 2 + 4
        fig.add("circle", cx=cx, cy=y(p["empirical_epsilon"]), r=4, fill=COLORS[1])
        fig.text(cx, height - bottom + 30, "no DP", text_anchor="middle")
    fig.text((left + plot_right) / 2, height - 8, "theoretical epsilon", size=12, text_anchor="middle")
    middle = (top + height - bottom) / 2
    fig.text(14, middle, "empirical epsilon", size=12, text_anchor="middle", transform=f"rotate(-90 14 {middle})")
    return str(fig)
