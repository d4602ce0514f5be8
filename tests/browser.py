"""The HTML reports as a user sees them: opened in headless Chromium (CI installs it; elsewhere the tests
that need it are skipped)."""

import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest


class TableCells(HTMLParser):
    """Rows of the table with a given id, as lists of cell texts."""

    def __init__(self, table_id):
        super().__init__()
        self.table_id, self.depth, self.rows, self.cell = table_id, 0, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.depth = 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table" and self.depth:
            self.depth = 0
        elif self.depth and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (Debian package chromium)")
        pytest.skip("chromium not installed (apt-get install chromium); CI installs it")
    return path


def _flags(profile) -> list[str]:
    return [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]


def open_in_chromium(page, tmp_path) -> str:
    """The page's DOM after Chromium rendered it, which must have logged no console error and loaded no
    resource (a report is one self-contained file)."""
    dom = subprocess.run(_flags(tmp_path / "profile") + ["--dump-dom", page.as_uri()], capture_output=True, text=True)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console_errors = [
        line
        for line in dom.stderr.splitlines()
        if "CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line
    ]
    assert console_errors == []
    return dom.stdout


def table_rows(dom: str, table_id: str) -> list[list[str]]:
    parser = TableCells(table_id)
    parser.feed(dom)
    return parser.rows


def screenshot(page, tmp_path) -> None:
    """The page renders to a non-trivial picture (kept where PRIVAUDIT_SCREENSHOT says, to look at)."""
    shot = tmp_path / "report.png"
    subprocess.run(
        _flags(tmp_path / "profile") + [f"--screenshot={shot}", "--window-size=1200,1800", page.as_uri()],
        capture_output=True,
        check=True,
    )
    assert shot.is_file() and shot.stat().st_size > 20_000
    if os.environ.get("PRIVAUDIT_SCREENSHOT"):
        shutil.copy(shot, os.environ["PRIVAUDIT_SCREENSHOT"])
