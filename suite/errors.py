"""Errors that map to the suite's exit codes (0 ok, 1 regression/failure, 2 usage or input error)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2


class InputError(Exception):
    """Bad input from the user (file, field, value). The CLI prints it and exits 2.

    The message must name where the problem is (file and field), the bad value and what is allowed.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = source
        self.field = field
        prefix = ""
        if source:
            prefix += f"{source}: "
        if field:
            prefix += f"{field}: "
        super().__init__(prefix + message)
