"""The coord check: is a parameterization right across widths? (mup's coord check, plus Eq 5 and 33-36.)

* `check` — `coord_check(build, widths, base_width, ...)` and `coord_check_spec(spec)`: train a
  model builder briefly at each width and return a `CoordCheck` (tidy frame, flags, timescales, plot).
* `run` — the short training of one width with the alignment monitor, on one process or sharded.
* `flags` — what the frame says: activation growth with width, the √m of Eq 5, timescales.
"""

from lrtransfer.coord.check import CoordCheck, coord_check, coord_check_spec

__all__ = ["CoordCheck", "coord_check", "coord_check_spec"]
