"""Read results for the report: Result JSON files, baseline files of the gate's store, or a wrapper with one
`"result"`, through the one result reader (`suite.results.collect`), so the report, the gate, run and memory
accept and refuse the same files. A store's evidence folder (raw session files) is left out."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from suite.results.collect import load_results as collect
from suite.results.schema import Result


def load_results(paths: Iterable[Path]) -> list[tuple[str, Result]]:
    """(source path, result) pairs from files and folders (searched recursively), in path order.

    Several results with one cell id are runs of that cell; the report pools them as the gate does.
    All bad files are reported together.
    """
    return [(str(p), r) for p, r in collect(paths, baselines=True, skip_evidence=True)]
