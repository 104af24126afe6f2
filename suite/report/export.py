"""results.json / results.csv: the flattened table, for people who make their own plots."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from suite.report.table import ReportRow, to_record


def records(rows: Sequence[ReportRow]) -> list[dict]:
    return [to_record(r) for r in rows]


def to_json(recs: Sequence[dict]) -> str:
    # one row per line: readable diffs, and the C encoder (indent= would use the slow pure-Python one)
    lines = ",\n".join(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in recs)
    return f"[\n{lines}\n]\n" if recs else "[]\n"


def _cell(v: object) -> object:
    # a list or mapping (objective_differences, startup) as JSON, which a spreadsheet user can still read
    if v is None:
        return ""
    if isinstance(v, list | tuple | dict):
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    return v


def to_csv(recs: Sequence[dict]) -> str:
    # union of columns: axes and versions can differ between cells
    fixed = list(recs[0]) if recs else []
    extra = sorted({k for r in recs for k in r} - set(fixed))
    columns = fixed + extra
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for r in recs:
        writer.writerow({k: _cell(r.get(k)) for k in columns})
    return buf.getvalue()
