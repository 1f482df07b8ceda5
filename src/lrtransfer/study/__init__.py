"""The whole LR-transfer study: run a sweep, analyse it, draw the figures, write the report.

* `catalogue` — the built-in studies (`study_names`, `study_spec`);
* `run` — `run_study(name_or_spec, out)` runs (or resumes) a sweep and then writes its report;
  `Study` does the same for the user's own model and training loop. `lrtransfer demo` is
  `run_study("demo", out)`: the built-in study of the Shakespeare byte-level llama;
* `report` — `write_study_report(dir)` turns any sweep folder into ``dir/report.html``,
  `write_results_report` a results frame; the recommendation table and the theory figures;
* `notes` — the notes under the verdicts (missing runs, refine and bracket stages, timescales, blow-ups);
* `html` — the static, offline HTML page itself (`write_report`).
"""

from lrtransfer.study.catalogue import study_names, study_spec
from lrtransfer.study.notes import (
    blowup_notes,
    bracket_note,
    missing_notes,
    refine_note,
    timescale_notes,
    timescales,
)
from lrtransfer.study.report import (
    recommendation_table,
    write_results_report,
    write_study_report,
)
from lrtransfer.study.run import Study, StudyResult, run_study

__all__ = [
    "Study",
    "StudyResult",
    "blowup_notes",
    "bracket_note",
    "missing_notes",
    "recommendation_table",
    "refine_note",
    "run_study",
    "study_names",
    "study_spec",
    "timescale_notes",
    "timescales",
    "write_results_report",
    "write_study_report",
]
