"""Hostile text from the data (labels, texts, file names) is printed and rendered as text, never as markup."""

import io

from rich.console import Console

from privaudit.console import print_rows, print_table
from privaudit.reports.html import html_table
from privaudit.reports.markdown import md_table
from privaudit.reports.svg import Figure

HOSTILE = ["[/b]", "[/INST] <script>alert(1)</script>", "a | b\nc", "m[v2].pt"]


def test_terminal_tables_print_markup_as_text():
    out = io.StringIO()
    console = Console(file=out, width=200)
    print_table("labels [bold]x[/bold]", ["label", "count"], [[text, "1"] for text in HOSTILE], console)
    print_rows("[/x]", [(text, text) for text in HOSTILE], console)
    printed = out.getvalue()
    assert "[/b]" in printed and "[/INST]" in printed and "m[v2].pt" in printed and "[bold]x[/bold]" in printed


def test_markdown_cells_carry_no_html_and_keep_their_table():
    lines = md_table(["text"], [[text] for text in HOSTILE])
    assert len(lines) == 2 + len(HOSTILE)  # a newline in a cell does not start a row
    body = "\n".join(lines)
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert r"a \| b c" in body  # the pipe does not end the cell


def test_html_and_svg_escape_user_text():
    assert "<script>" not in html_table("t", ["h"], [[text] for text in HOSTILE])
    figure = Figure(100, 100, "label <b>")
    figure.text(0, 0, HOSTILE[1])
    assert "<script>" not in str(figure) and "&lt;script&gt;" in str(figure)
