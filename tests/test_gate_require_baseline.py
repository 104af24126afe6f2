"""`gate --require-baseline` (issue 21, item 5): a cell without a baseline fails (exit 1) instead of passing as
`new`, and a --baselines folder that holds no baseline at all (a typo that names an existing folder) is an
input error (exit 2). Without the flag both stay as before: `new`, exit 0."""

from __future__ import annotations

import json

from gate_data import base_results, write_baseline, write_results

from suite.cli import main


def test_a_cell_without_a_baseline_fails_with_the_flag(tmp_path, capsys) -> None:
    full, lora = base_results()[0][0], base_results()[1][0]
    write_baseline([full], tmp_path / "b")
    write_results([full, lora], tmp_path / "cur")
    argv = ["gate", str(tmp_path / "cur"), "--baselines", str(tmp_path / "b"), "--format", "json"]
    assert main(argv) == 0
    new = next(r for r in json.loads(capsys.readouterr().out)["rows"] if r["verdict"] == "new")
    assert (new["cell"], new["regression"]) == (lora.id, False)
    assert main([*argv, "--require-baseline"]) == 1
    doc = json.loads(capsys.readouterr().out)
    new = next(r for r in doc["rows"] if r["verdict"] == "new")
    assert (new["cell"], new["regression"]) == (lora.id, True)
    assert "--require-baseline: a cell needs a baseline" in new["detail"]
    assert doc["exit_code"] == 1
    # the table puts it first, in capitals, like any failing row
    assert main([*argv[:-2], "--require-baseline"]) == 1
    table = capsys.readouterr().out.splitlines()
    assert table[3].startswith(lora.id) and " NEW " in table[3]


def test_a_folder_with_no_baseline_at_all_is_an_input_error(tmp_path, capsys) -> None:
    full = base_results()[0][0]
    write_results([full], tmp_path / "cur")
    (tmp_path / "typo" / "h100").mkdir(parents=True)  # exists, holds nothing
    argv = ["gate", str(tmp_path / "cur"), "--baselines", str(tmp_path / "typo")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--require-baseline"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"baseline folder {tmp_path / 'typo'} holds no baseline at all (--require-baseline)" in captured.err
