"""The report plots each cell's series from the baseline store (issue 21, item 3): a "Baseline history"
section, an SVG per cell in index.html and a table in index.md, when the store holds recorded gate runs."""

from __future__ import annotations

import re

from gate_data import base_results, scaled, write_baseline, write_results

from suite.cli import main


def record(tmp_path, capsys, run, hour: int, factor: float) -> None:
    r = scaled(run, factor)
    r = r.model_copy(
        update={"provenance": r.provenance.model_copy(update={"start_time": f"2026-12-04T{hour:02d}:00:00+00:00"})}
    )
    write_results([r], tmp_path / f"g{hour}")
    assert main(["gate", str(tmp_path / f"g{hour}"), "--baselines", str(tmp_path / "b"), "--record"]) in (0, 1)
    assert "recorded 1 cell(s)" in capsys.readouterr().out


def test_the_report_of_a_store_plots_its_history(tmp_path, capsys) -> None:
    (run,) = base_results()[1]
    (other,) = base_results()[0]
    write_baseline([run], tmp_path / "b")
    write_baseline([other], tmp_path / "b")  # never gated: no series, no plot
    for hour, factor in ((1, 1.0), (2, 0.9), (3, 0.9)):
        record(tmp_path, capsys, run, hour, factor)
    assert main(["report", "--baselines", str(tmp_path / "b"), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "index.html").read_text()
    md = (tmp_path / "rep" / "index.md").read_text()
    assert '<h2 id="history">Baseline history</h2>' in html and 'href="#history"' in html
    figs = re.findall(r'<figure data-plot="history">(.*?)</figure>', html, re.S)
    assert len(figs) == 1 and run.id in figs[0]
    tips = re.findall(r"<title>(.*?)</title>", figs[0])
    assert sum("gated" in t for t in tips) == 3 and sum("promoted" in t for t in tips) == 1
    assert any("throughput suspicious" in t for t in tips) and any("throughput regressed" in t for t in tips)
    assert "<circle cx=" in figs[0] and 'fill="#B2182B"' in figs[0] and 'fill="#E69F00"' in figs[0]
    section = md.split("## Baseline history", 1)[1]
    assert run.id in section and other.id not in section
    rows = [ln for ln in section.splitlines() if ln.startswith("| 20")]
    assert [ln.split("|")[2].strip() for ln in rows] == ["promoted (current)", "gated", "gated", "gated"]
    assert "throughput regressed" in rows[-1]


def test_no_history_no_section(tmp_path, capsys) -> None:
    write_baseline(base_results()[1], tmp_path / "b")
    assert main(["report", "--baselines", str(tmp_path / "b"), "--out", str(tmp_path / "rep")]) == 0
    assert "Baseline history" not in (tmp_path / "rep" / "index.html").read_text()
    assert "Baseline history" not in (tmp_path / "rep" / "index.md").read_text()
