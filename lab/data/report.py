"""Bad-row accounting shared by every loader.

Loaders skip rows they cannot use and count them by reason; a file whose bad
rows exceed ``max_bad_fraction`` is rejected with an error naming the file and
the first bad line, because a mostly-bad file is almost always the wrong file
(wrong schema, wrong delimiter) rather than a few broken rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """A data file is missing, unreadable, or mostly bad."""


@dataclass
class LoadReport:
    """Counts of rows read, kept and skipped (per reason, with the first line of each)."""

    path: Path
    rows: int = 0
    kept: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    first_bad_line: dict[str, int] = field(default_factory=dict)
    related: list[LoadReport] = field(default_factory=list)  # reports of files read alongside (e.g. questions)

    def add_bad(self, reason: str, line: int) -> None:
        """Record one skipped row."""
        self.bad[reason] = self.bad.get(reason, 0) + 1
        self.first_bad_line.setdefault(reason, line)

    @property
    def bad_rows(self) -> int:
        """Total skipped rows."""
        return sum(self.bad.values())

    def summary(self) -> str:
        """One line for logs: ``path: kept/rows rows kept; bad: reason N (first at line L), ...``."""
        text = f"{self.path}: {self.kept}/{self.rows} rows kept"
        if self.bad:
            parts = [
                f"{reason} {n} (first at line {self.first_bad_line[reason]})" for reason, n in sorted(self.bad.items())
            ]
            text += "; bad: " + ", ".join(parts)
        return "\n".join([text, *(r.summary() for r in self.related)])

    def check(self, max_bad_fraction: float) -> None:
        """Raise :class:`DataError` if the file is empty or mostly bad."""
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        if self.rows == 0:
            raise DataError(f"{self.path}: no data rows")
        if not self.bad and self.kept == 0:
            raise DataError(f"{self.path}: no usable rows")
        if self.kept == 0 or self.bad_rows / self.rows > max_bad_fraction:
            reason, line = min(self.first_bad_line.items(), key=lambda kv: kv[1])
            raise DataError(
                f"{self.path}:{line}: {self.bad_rows} of {self.rows} rows are bad "
                f"(more than {max_bad_fraction:.0%}); first bad row: {reason}. {self.summary()}"
            )
