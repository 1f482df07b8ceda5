"""The study report: analyse a sweep's results once, draw its figures and write ``report.html``.

`write_study_report(dir)` turns any sweep folder into ``dir/report.html``; `write_results_report`
does the same for a results frame (a sweep run elsewhere). The page itself is `study.html`'s; the
notes under the verdicts are `study.notes`'.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from lrtransfer import analysis, sweep
from lrtransfer.plots.study import FigureInfo, write_study_figures, write_theory_figures
from lrtransfer.records.store import FINISHED
from lrtransfer.study.html import write_report
from lrtransfer.study.notes import (
    blowup_notes,
    bracket_note,
    missing_notes,
    partial_note,
    refine_note,
    timescale_notes,
)
from lrtransfer.sweep.spec import SPEC_FILE, read_written_spec

VERDICT_COLUMNS = ("arm", "verdict", "per_doubling", "per_doubling_lo", "per_doubling_hi", "max_regret", "regret_lo",
                   "regret_hi", "next_step", "text")
THEORY_CAPTIONS = {
    "figure7_extra_warmup": (
        "Additional warmup factors (Figure 7, Eq 14-15)",
        "The width-dependent warmups that can stand in for μP's (η/m, mλ) without any LR scaling: the "
        "exp warmup rises from 1/m to 1 over half of training, the decay-away factor follows the weight "
        "norm's approach to equilibrium. m = 16, η = 0.004, λ = 0.1 as in the paper.",
    ),
    "figure15_update_alignment": (
        "Predicted update alignment vs batch size (Figure 15, Eq 27-28)",
        "In the Appendix E noise model α_ΔW ≈ 1/√B while B ≪ C, then ≈ 1/√C once B ≫ C: a width "
        "dependence μP does not assume. Points: Monte Carlo (Eq 23); dashed: the Eq 28 approximation.",
    ),
}


def write_study_report(dir: str | Path, partial: str | None = None) -> tuple[Path, list[str], analysis.Analysis]:
    """Analyse the sweep in `dir` and write `dir/report.html`; returns it, the verdict lines and the
    analysis. ``partial``: the stage just finished, for a report written while the sweep runs."""
    dir = Path(dir)
    results = sweep.results(dir)
    align = sweep.alignment(dir, results[results["status"].isin(FINISHED)])
    read_written_spec(dir)  # a damaged or missing sweep.yaml: one line naming it
    spec_yaml = (dir / SPEC_FILE).read_text()
    return write_results_report(dir, results, align=align, spec_yaml=spec_yaml, partial=partial)


def write_results_report(dir: str | Path, results: pd.DataFrame, *, align: pd.DataFrame | None = None,
                         spec_yaml: str = "", partial: str | None = None,
                         analysed: analysis.Analysis | None = None) -> tuple[Path, list[str], analysis.Analysis]:
    """`dir/report.html` of a results frame (docs/study.md), analysed once (`analysis.analyze`,
    unless ``analysed`` is given) for the verdicts, the figures, the notes and the recommendation.
    ``spec_yaml``: the sweep's resolved spec, shown in the report (empty for a sweep run elsewhere)."""
    dir = Path(dir)
    spec = yaml.safe_load(spec_yaml) or {} if spec_yaml else {}  # the resolved spec, parsed once
    an = analysis.analyze(results) if analysed is None else analysed
    table = an.table
    missing = missing_notes(results, spec, an.best)
    figures = write_study_figures(results, align, dir / "figures", spec.get("warmup_arms") or [], an)
    figures += theory_figures(dir / "figures")
    name = spec.get("name", dir.name)
    path = write_report(
        dir, title=("[partial] " if partial else "") + f"LR transfer study: {name}",
        verdicts=table[[c for c in VERDICT_COLUMNS if c in table]],
        best=an.best, figures=figures, spec_yaml=spec_yaml or "(the sweep was run elsewhere)",
        runs=results.drop(columns=["config"], errors="ignore"), recommendation=recommendation_table(an),
        notes=[*partial_note(partial), *missing, *analysis.phase1_edges(results), *refine_note(results, spec),
               *bracket_note(results, spec), *timescale_notes(results, an), *blowup_notes(an.best)],
    )
    return path, missing + an.verdicts, an


REPORT_TARGETS = (4, 16, 64)  # the recommendation table's targets, in multiples of the widest measured width


def recommendation_table(an: analysis.Analysis) -> pd.DataFrame | None:
    """Each arm's recommended base LR at `REPORT_TARGETS` × its widest measured width."""
    if an.best.empty or not an.lines:
        return None
    widest = float(an.best["width_mult"].max())
    base = an.base_width()
    frames = []
    for k in REPORT_TARGETS:
        rec = an.recommend(width_mult=widest * k).table
        target = {"width": rec["width_mult"] * base} if base else {}
        frames.append(rec.assign(**target))
    df = pd.concat(frames, ignore_index=True)
    columns = ["arm", "verdict", *(["width"] if base else []), "width_mult", "lr", "lr_lo", "lr_hi", "hidden_lr",
               "hidden_wd", "timescales", "warnings"]
    return df[[c for c in columns if c in df]].sort_values(["arm", "width_mult"], ignore_index=True)


def theory_figures(out: Path) -> list[FigureInfo]:
    """Figures 7 and 15 from `lrtransfer.theory`, as report figures (computed once per folder:
    they depend on the paper's constants only, and the partial reports of a sweep reuse them)."""
    cached = [out / f"{name}.{ext}" for name in THEORY_CAPTIONS for ext in ("png", "csv")]
    paths = cached if all(p.is_file() for p in cached) else write_theory_figures(out)
    pngs = [p for p in paths if p.suffix == ".png"]
    return [FigureInfo(p.stem, p, p.with_suffix(".csv"), *THEORY_CAPTIONS[p.stem]) for p in pngs
            if p.stem in THEORY_CAPTIONS]
