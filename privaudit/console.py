"""The terminal: one rich console on stderr for progress and messages, results on stdout. User-supplied
strings are always printed as plain text (rich.text.Text or markup=False), never as markup.

Tables read at any width: one that does not fit the terminal (a CI log is 80 columns) is printed
transposed, one column per row of figures, in as many blocks as the width needs; the reports keep the
full tables.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

# No emoji codes: "pkg.mod:train: no module" must not print a train in place of ":train:".
err_console = Console(stderr=True, emoji=False)
out_console = Console(emoji=False)

# rich's box: one border character left, one right and " | " between cells (padding 1 each side).
_BORDER, _GAP = 4, 3


def make_progress(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


def table_width(columns: list[list[str]]) -> int:
    """Characters a table of these columns (header first) needs on one line per row."""
    return sum(max(len(cell) for cell in column) for column in columns) + _GAP * (len(columns) - 1) + _BORDER


def print_table(title: str, header: list[str], rows: list[list[str]], console: Console | None = None) -> None:
    """Header and rows as a table; transposed into blocks when it is wider than the terminal."""
    console = console or out_console
    columns = [[h, *(row[i] for row in rows)] for i, h in enumerate(header)]
    if not rows or table_width(columns) <= console.width:
        console.print(_table(title, header, rows))
        return
    # Transposed: the first column names each row of figures; the header becomes the first column.
    names = header[1:]
    blocks: list[list[list[str]]] = [[]]
    for row in rows:
        candidate = [*blocks[-1], row]
        width = table_width([[header[0], *names], *candidate])  # each row of figures becomes a column
        if blocks[-1] and width > console.width:
            blocks.append([row])
        else:
            blocks[-1] = candidate
    for i, block in enumerate(blocks):
        part = f" ({i + 1} of {len(blocks)})" if len(blocks) > 1 else ""
        console.print(
            _table(
                title + part,
                [header[0], *(r[0] for r in block)],
                [[name, *(r[j + 1] for r in block)] for j, name in enumerate(names)],
            )
        )


def print_rows(title: str, rows: list[tuple[str, str]], console: Console | None = None) -> None:
    """(field, value) rows, values folded to the terminal's width."""
    table = Table(title=Text(title), show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(Text(key), Text(value))
    (console or out_console).print(table)


def _table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    # Every string is Text, never markup: labels, file names and texts come from the user's data, and
    # "[/b]" in a label must print as itself, not end a style (or crash the printing).
    table = Table(title=Text(title), title_justify="left")
    for i, column in enumerate(header):
        table.add_column(Text(column), justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*map(Text, row))
    return table
