"""Reading the pipe tables of a report's index.md back, for tests of what the report shows."""

from __future__ import annotations


def table_lines(text: str, heading: str) -> list[list[str]]:
    """Header and body cells of the first pipe table after `heading` in index.md."""
    part = text[text.index(heading) :].splitlines()
    start = next(i for i, ln in enumerate(part) if ln.startswith("|"))
    block = []
    for ln in part[start:]:
        if not ln.startswith("|"):
            break
        block.append(ln)
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in block if not ln.startswith("|:")]


def column(table: list[list[str]], name: str) -> dict[str, str]:
    """cell id -> value of one column of a cell table."""
    head = table[0]
    return {r[head.index("cell")]: r[head.index(name)] for r in table[1:]}


def best_cells_row(text: str, matrix: str) -> dict[str, str]:
    """The best-cells line of one matrix (column -> value), whatever the widths the other lines give the table."""
    table = table_lines(text, "## Best cells")
    head = table[0]
    (row,) = [r for r in table[1:] if r[head.index("matrix")] == matrix]
    return dict(zip(head, row, strict=True))
