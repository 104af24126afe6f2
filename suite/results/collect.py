"""Results from the files and folders named on a command line (gate, baseline promote, report, memory).

What a file may hold: a Result, a baseline file (its runs), or a `{"result": Result}` wrapper. A file named
on the command line must hold one of them. Inside a folder, `result.json` must be a result; any other
`*.json` is taken when it holds results and skipped when it is other JSON (a plan, a report's
results.json); a file that does not parse is an error either way, since it may be a cut-off result. All
errors are reported together, or, under `on_error="skip"` (memory validate), a bad file found in a folder is
left out with a warning on stderr naming it. Every result goes through the one reader,
`suite.results.io.result_from_dict`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from suite.errors import InputError
from suite.results.baseline import baseline_from_dict
from suite.results.io import looks_like_result, read_json, result_from_dict
from suite.results.schema import Result

RESULT_NAME = "result.json"
# `baselines/evidence/`: raw files of GPU sessions (logs, partial runs) kept beside the store, not part of it
EVIDENCE_DIR = "evidence"
# what an unreadable file found in a folder does: fail the whole load, or be left out with a warning
OnError = Literal["raise", "skip"]
ON_ERROR: tuple[OnError, ...] = ("raise", "skip")


def in_evidence(path: Path, root: Path) -> bool:
    """Whether `path` lies in the evidence folder of the store or results tree `root` (searched recursively)."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return False
    return EVIDENCE_DIR in rel.parts[:-1]


def read_results_file(path: Path, *, in_folder: bool, baselines: bool = True) -> list[Result] | None:
    """The results a file holds. Other JSON is None when it was found in a folder and bad input when named.
    With `baselines=False` a baseline file counts as other JSON (the gate compares results, not baselines)."""
    data = read_json(path)
    source = str(path)
    if looks_like_result(data):
        return [result_from_dict(data, source)]
    if baselines and isinstance(data, dict) and isinstance(data.get("results"), list):
        return baseline_from_dict(data, source).results
    if isinstance(data, dict) and isinstance(data.get("result"), dict):
        return [result_from_dict(data["result"], source, prefix="result.")]
    if in_folder and path.name != RESULT_NAME:
        return None
    what = "a result (no 'schema'/'id')" + (" nor a baseline (no 'results' list)" if baselines else "")
    raise InputError(f"neither {what}", source=source)


def load_results(
    paths: Iterable[str | Path],
    *,
    baselines: bool = False,
    skip_evidence: bool = False,
    on_error: OnError = "raise",
    skipped: list[str] | None = None,
) -> list[tuple[Path, Result]]:
    """(file, result) pairs from files and folders (searched recursively, in path order).

    `baselines`: also take the runs of baseline files (the report and memory read the store; the gate and
    promote read results only). `skip_evidence`: inside a folder, leave out its `evidence/` subtree (raw
    session files beside a store). `on_error`: what a file found in a folder that does not read does:
    "raise" (the default) reports every such file together in one InputError; "skip" leaves each out and
    writes `warning: skipped <file>: <why>` to stderr, or appends `<file>: <why>` to `skipped` where one is
    given (a caller that reports them itself). A path named in `paths` that is missing or does not read is an
    error under either policy."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    found: list[tuple[Path, Result]] = []
    errors: list[str] = []
    named = [Path(p) for p in paths]
    for root in named:
        if root.is_dir():
            files = sorted(
                p for p in root.rglob("*.json") if p.is_file() and not (skip_evidence and in_evidence(p, root))
            )
            in_folder = True
        elif root.is_file():
            files, in_folder = [root], False
        else:
            errors.append(f"{root}: no such file or directory")
            continue
        for f in files:
            try:
                results = read_results_file(f, in_folder=in_folder, baselines=baselines)
            except InputError as exc:
                if in_folder and on_error == "skip":
                    why = str(exc).removeprefix(f"{f}: ")
                    if skipped is not None:
                        skipped.append(f"{f}: {why}")
                    else:
                        print(f"warning: skipped {f}: {why}", file=sys.stderr)
                else:
                    errors.append(str(exc))
                continue
            found += [(f, r) for r in results or ()]
    if errors:
        raise InputError("\n  ".join(["bad result input:", *errors]))
    return found
