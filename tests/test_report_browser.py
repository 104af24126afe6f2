"""The HTML report as a person sees it: headless Chromium loads index.html, the page logs nothing to the
console, tables and plots are in the rendered DOM, and a screenshot is saved for a human to look at."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from synthetic_results import make_result, matrix

from suite.report.build import write_report
from suite.report.table import flatten_all

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium)")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile.mkdir(parents=True, exist_ok=True)  # a new, empty profile per run
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.count: dict[str, int] = {}
        self.plots: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.count[tag] = self.count.get(tag, 0) + 1
        a = dict(attrs)
        if tag == "figure" and a.get("data-plot"):
            self.plots.append(a["data-plot"])
        for key in ("src", "href"):
            if a.get(key):
                self.links.append(a[key])


def test_console_capture_sees_errors(tmp_path: Path):
    """The negative control: without it, 'no console errors' below could pass by capturing nothing."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><p>x</p><script>console.error("boom"); missingFn();</script>')
    proc = chromium(bad, tmp_path / "profile", "--dump-dom")
    lines = console_lines(proc.stderr)
    assert any("boom" in line for line in lines) and any("missingFn" in line for line in lines)


def test_report_page_in_chromium(tmp_path: Path):
    evil = make_result(cell_id="<script>alert(1)</script>", status="crash", reason="<img src=x onerror=alert(2)>")
    results = [*matrix(gpus=("h100", "h200")), evil]
    out = tmp_path / "report"
    write_report(flatten_all((f"r{i}", r) for i, r in enumerate(results)), out)
    page = out / "index.html"

    proc = chromium(page, tmp_path / "profile-dom", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_lines(proc.stderr) == []
    dom = Dom()
    dom.feed(proc.stdout)
    assert dom.count.get("script", 0) == 0 and dom.count.get("img", 0) == 0  # the hostile strings stayed text
    assert "<script>alert(1)</script>" not in proc.stdout and "&lt;script&gt;alert(1)" in proc.stdout
    # self-contained: nothing to fetch, only in-page anchors
    assert all(link.startswith("#") for link in dom.links), dom.links
    assert dom.count.get("link", 0) == 0
    # per GPU generation and model: the cell table and provenance, plus the best-cells and cross tables
    assert dom.count["table"] == 2 * 2 + 2
    assert sorted(set(dom.plots)) == ["accuracy", "memory", "phases", "steps"]
    assert dom.plots.count("memory") == 2 and dom.count["svg"] == len(dom.plots) == 8
    assert dom.count["circle"] > 50 and dom.count["rect"] > 20  # marks were drawn, not empty axes

    shot = tmp_path / "report.png"
    proc = chromium(page, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,2600")
    assert proc.returncode == 0 and shot.stat().st_size > 50_000
    assert console_lines(proc.stderr) == []
