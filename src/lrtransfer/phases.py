"""The stages of a sweep a run can belong to, as written in ``plan.csv`` and the results frame.

A `Phase` is a `str`: ``"1"`` (phase 1 of the two-phase protocol, Appendix G.2), ``"2"`` (phase 2,
or the one phase) and ``"dynamics"`` (the dynamics runs, G.3.3-4), so that it compares equal to the
text read back from a file and needs no conversion.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    ONE = "1"
    TWO = "2"
    DYNAMICS = "dynamics"

    @property
    def title(self) -> str:
        """How a report or a progress line names the stage: ``phase 1``, ``phase 2``, ``dynamics``."""
        return "dynamics" if self is Phase.DYNAMICS else f"phase {self.value}"
