"""Read results for the report: Result JSON files, baseline files of the gate's store
(`{"format": 1, "results": [Result, ...], "history": [...]}`), or a wrapper with one `"result"`.

Validation and error messages are the gate's (`suite.gate.load`), so both stages accept and refuse the
same files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from suite.errors import InputError
from suite.gate.store import in_evidence, read_results_file
from suite.results.schema import Result


def load_results(paths: Iterable[Path]) -> list[tuple[str, Result]]:
    """(source path, result) pairs from files and folders (searched recursively), in path order.

    Several results with one cell id are runs of that cell; the report pools them as the gate does.
    All bad files are reported together.
    """
    found: list[tuple[str, Result]] = []
    errors: list[str] = []
    for root in paths:
        if root.is_dir():
            # a store's evidence folder holds raw session files, not results to report
            files = sorted(p for p in root.rglob("*.json") if p.is_file() and not in_evidence(p, root))
            in_folder = True
        elif root.is_file():
            files, in_folder = [root], False
        else:
            errors.append(f"{root}: no such file or folder")
            continue
        for f in files:
            try:
                results = read_results_file(f, in_folder=in_folder)
            except InputError as exc:
                errors.append(str(exc))
                continue
            found += [(str(f), r) for r in results or ()]
    if errors:
        raise InputError("\n  ".join(["bad result input:", *errors]))
    return found
