"""What a start-up check reports: a :class:`Problem` per topic or table, one paragraph
each, and the :class:`StartupError` that carries the fatal ones. Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing the worker cannot rely on: ``subject`` (topic/table) and a paragraph."""

    subject: str
    text: str
    fatal: bool = True

    def paragraph(self) -> str:
        return ("error: " if self.fatal else "warning: ") + self.text


class StartupError(Exception):
    """Fatal problems found before start: printed as paragraphs, exit status 2."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n\n".join(p.paragraph() for p in self.problems))
