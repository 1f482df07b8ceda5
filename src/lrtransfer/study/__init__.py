"""The whole LR-transfer study: run a sweep, analyse it, draw the figures, write the report.

`write_study_report(dir)` turns any sweep folder into `dir/report.html`; `run_study(name_or_spec,
out)` runs (or resumes) a sweep and then writes its report. `lrtransfer demo` is
`run_study("demo", out)`: the built-in study of the Shakespeare byte-level llama.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lrtransfer import analysis, sweep
from lrtransfer.config import TrialConfig, validate
from lrtransfer.objectives import objective_ref
from lrtransfer.plots.study import FigureInfo, write_study_figures, write_theory_figures
from lrtransfer.records.store import FINISHED
from lrtransfer.study.html import write_report
from lrtransfer.sweep.spec import SPEC_FILE, read_written_spec

log = logging.getLogger("lrtransfer.study")

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


def study_names() -> list[str]:
    """Built-in sweep specs (`lrtransfer demo`, `lrtransfer sweep NAME`)."""
    folder = resources.files("lrtransfer") / "presets" / "sweeps"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def study_spec(name: str) -> dict[str, Any]:
    """The raw dict of a built-in sweep spec."""
    if name not in study_names():
        raise ValueError(f"study: {name!r} is not one of {'|'.join(study_names())}")
    return yaml.safe_load((resources.files("lrtransfer") / "presets" / "sweeps" / f"{name}.yaml").read_text())


@dataclass
class StudyResult:
    """What `run_study` did: the report (None if it could not be written: `verdicts` says why), the
    sweep's report, the wall time, the verdict lines and the one analysis of its results
    (`analysis.Analysis`, None with the report), which `recommend` reads."""

    report: Path | None
    sweep: sweep.SweepReport
    wall_s: float
    verdicts: list[str]
    analysis: analysis.Analysis | None = None

    def recommend(self, width: float | None = None, *, width_mult: float | None = None,
                  steps: int | None = None) -> analysis.Recommendation:
        """The base LR (90% interval), per-role LR and λ and weight-decay timescales at ``width``
        for every arm (`analysis.Analysis.recommend`)."""
        if self.analysis is None:
            raise ValueError("recommend: this study has no finished runs to analyse")
        return self.analysis.recommend(width, width_mult=width_mult, steps=steps)


def run_study(spec: str | Path | dict | sweep.SweepSpec, out: str | Path, *, workers: int | None = None,
              threads: int = 1, executor: str = "local", ray_address: str | None = None,
              progress: bool | None = None, placement: dict[str, Any] | None = None) -> StudyResult:
    """Run or resume the sweep (a built-in name, a spec file or dict), then write its report.

    After each stage a partial report is written in a background thread, while the next stage
    trains (a report costs seconds of the driver's time, which the stages need not wait for)."""
    t0 = time.perf_counter()
    if isinstance(spec, str) and spec in study_names():
        spec = study_spec(spec)
    with ThreadPoolExecutor(max_workers=1) as reports:  # one at a time: pyplot is not thread-safe
        done = sweep.run_sweep(spec, out, workers=workers, threads=threads, executor=executor, ray_address=ray_address,
                               progress=progress, on_stage=lambda stage: reports.submit(_partial, out, stage),
                               placement=placement)
        reports.shutdown(cancel_futures=True)  # a partial report not begun yet is superseded by the final one
    analysed = None
    try:  # after the partial ones have finished
        report, lines, analysed = write_study_report(out)
    except Exception as err:  # the training is done and in the store: hand it back, say what failed
        log.warning("report of %s not written: %s: %s", out, type(err).__name__, err)
        report, lines = None, [f"report not written ({type(err).__name__}: {err}); `lrtransfer report {out}` "
                               "writes it from the store"]
    return StudyResult(report, done, time.perf_counter() - t0, lines, analysed)


class Study:
    """An LR-transfer study of the user's own model and training loop (`lrtransfer.Trial`).

    ``Study(objective, base_width=64, widths=[1, 2, 4], lrs=[...], rules=["standard",
    "independent"], seeds=[0], params={...})`` takes the fields of a sweep spec (docs/study.md);
    ``params`` reach the objective as ``trial.params`` and ``overrides`` set dotted fields of every
    trial (``{"optim.weight_decay": 0.1, "run.final_window": 20}``). The objective must be a
    module-level function (worker processes import it by name). The spec is validated here, so a
    mistake fails before anything trains.
    """

    def __init__(self, objective: Callable[..., None], *, base_width: int,
                 params: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                 **spec_fields: Any) -> None:
        self.objective = objective
        base = {"objective": objective_ref(objective), "base_width": base_width, "params": params or {},
                "overrides": overrides or {}}
        self.spec = sweep.load_spec({"name": getattr(objective, "__name__", "study"), **spec_fields, "base": base})

    def run(self, out: str | Path, *, workers: int | None = None, threads: int = 1, executor: str = "local",
            ray_address: str | None = None, progress: bool | None = None,
            placement: dict[str, Any] | None = None) -> StudyResult:
        """Run (or resume: finished trials are not re-run) the study in `out`, then write its report;
        `placement` places the trials on GPUs (``{"gpus": "0,1", "runs_per_gpu": 2}``, `run_sweep`)."""
        return run_study(self.spec, out, workers=workers, threads=threads, executor=executor,
                         ray_address=ray_address, progress=progress, placement=placement)


def _partial(out: str | Path, stage: str) -> None:
    """The early look: a report after each stage, marked partial; never stops the sweep."""
    try:
        write_study_report(out, partial=stage)
    except Exception as err:  # a report of a half-done sweep may lack what a figure needs
        log.warning("partial report after %s not written: %s: %s", stage, type(err).__name__, err)


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
        notes=[*_partial_note(partial), *missing, *analysis.phase1_edges(results), *refine_note(results, spec),
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


def blowup_notes(best: pd.DataFrame) -> list[str]:
    """Curves where finite blow-ups or spikes were taken as unstable (`analysis.blowups`)."""
    if "n_blowup" not in best or not best["n_blowup"].any():
        return []
    where = ", ".join(f"{r.arm} {r.width_mult:g}× ({r.n_blowup})" for r in best[best["n_blowup"] > 0].itertuples())
    return [f"Finite blow-ups or spikes, far above their neighbours on the loss-vs-LR curve, were taken as unstable "
            f"LRs (like a divergence: they bound the fit) at {where}; the figure marks them ✗."]


def missing_notes(results: pd.DataFrame, spec: dict[str, Any], best: pd.DataFrame | None = None) -> list[str]:
    """What an unfinished or failed sweep lacks: runs without a result, stages that were never
    planned (no phase-1 pick, no phase-2 standard run), arms without a verdict. [] when complete."""
    runs = results.drop_duplicates("config_hash")
    count = runs["status"].value_counts()
    notes = []
    if waiting := [f"{count[s]} {s}" for s in ("pending", "running") if s in count]:
        notes.append(f"{sum(runs['status'].isin(('pending', 'running')))} of {len(runs)} runs have no result yet "
                     f"({', '.join(waiting)}; running: in flight, or killed): re-run the sweep on this folder to "
                     "finish them. Verdicts and figures use the finished runs only.")
    if "failed" in count:
        notes.append(f"{count['failed']} of {len(runs)} runs failed (status 'failed' in the run table; the store "
                     "holds each error); they count as unstable LRs.")
    phase = results["phase"].astype(str)
    picked = analysis.phase1_picks(results[phase == "1"]) if (phase == "1").any() else {}
    for arm in dict.fromkeys(results.loc[phase == "1", "arm"]):
        if arm not in picked and not ((results["arm"] == arm) & (phase == "2")).any():
            notes.append(f"arm {arm}: phase 2 was not planned: no phase-1 LR of it finished with a finite loss "
                         "(every seed), so there is no LR to freeze, and no verdict.")
    if spec.get("dynamics") and not (phase == "dynamics").any() and analysis.dynamics_lr(results, best) is None:
        notes.append("dynamics: not planned (no finished phase-2 run of the standard arm); Figures 4, 5 and 16 "
                     "are missing.")
    return notes


def theory_figures(out: Path) -> list[FigureInfo]:
    """Figures 7 and 15 from `lrtransfer.theory`, as report figures (computed once per folder:
    they depend on the paper's constants only, and the partial reports of a sweep reuse them)."""
    cached = [out / f"{name}.{ext}" for name in THEORY_CAPTIONS for ext in ("png", "csv")]
    paths = cached if all(p.is_file() for p in cached) else write_theory_figures(out)
    pngs = [p for p in paths if p.suffix == ".png"]
    return [FigureInfo(p.stem, p, p.with_suffix(".csv"), *THEORY_CAPTIONS[p.stem]) for p in pngs
            if p.stem in THEORY_CAPTIONS]


def _partial_note(stage: str | None) -> list[str]:
    if stage is None:
        return []
    return [f"PARTIAL REPORT, written after {stage} ({time.strftime('%H:%M:%S')}): the sweep is still running; "
            "later stages add runs, verdicts and figures. It is rewritten after every stage and when the sweep ends."]


def refine_note(results: pd.DataFrame, spec: dict) -> list[str]:
    """How many runs the refine stage added (phase-2 seeds beyond the spec's)."""
    seeds = spec.get("seeds") or [0]
    extra = results[(results["phase"].astype(str) == "2") & ~results["seed"].isin(seeds)]
    if extra.empty:
        return []
    where = ", ".join(f"{arm} {m:g}×" for (arm, m), _ in extra.groupby(["arm", "width_mult"]))
    return [f"The refine stage added {extra['config_hash'].nunique()} runs: more seeds at the LRs around the "
            f"optimum where a verdict was inconclusive ({where})."]


def bracket_note(results: pd.DataFrame, spec: dict) -> list[str]:
    """What an adaptive phase 2 (spec ``bracket``) ran: LRs per curve out of the grid."""
    k, grid = spec.get("bracket"), spec.get("lrs") or []
    phase2 = results[results["phase"].astype(str) == "2"]
    if not k or phase2.empty:
        return []
    sizes = phase2.groupby(["arm", "width_mult"])["lr"].nunique()
    return [f"Phase 2 was adaptive (bracket {k}): each curve started at its {k} grid LRs around the expected "
            f"optimum and grew while its best LR sat at an edge; curves have {sizes.min()}–{sizes.max()} of the "
            f"grid's {len(grid)} LRs ({phase2['config_hash'].nunique()} phase-2 runs)."]


def timescale_notes(results: pd.DataFrame, analysed: analysis.Analysis | None = None) -> list[str]:
    """How many weight-decay timescales 1/(2ηλ) (Eq 33-36) the runs span, per arm at the widest width.

    The effect the study looks for lives in the weight-decay equilibrium; a run shorter than a few
    timescales cannot show it. Counted at the LR best at the base width, with the schedule's mean
    multiplier (η_t varies), for the hidden layers' actual η and λ.
    """
    if "config" not in results:
        return []
    runs = results[(results["phase"].astype(str) == "2") & results["config"].notna()]
    best = analysis.best_lrs(results) if analysed is None else analysed.best
    if runs.empty or best.empty:  # nothing finished yet
        return []
    base = best[best["width_mult"] == best["width_mult"].min()].set_index("arm")["lr_grid"].dropna()  # stable only
    lines = []
    for (arm, m), group in runs.groupby(["arm", "width_mult"]):
        if arm not in base.index:
            continue
        row = group.iloc[(group["lr"] - base[arm]).abs().argmin()]
        n = timescales(validate(row["config"]))
        if n is not None:
            lines.append(f"{arm} at {m:g}×, base LR {row['lr']:.2g}: {n:.1f} timescales")
    if not lines:  # a user objective that does not say how many steps it trains
        return []
    return [
        "Weight decay sets the relative update size only after about 1/(2ηλ) steps (Eq 33-36), so the "
        "rules can differ only in runs that span many such timescales. Here (hidden layers, at the LR "
        "best at the base width, η averaged over the schedule): " + "; ".join(lines) + ". The paper's "
        "llama runs span about 30."
    ]


def timescales(config: TrialConfig) -> float | None:
    """2·mean(η_t)·λ·T for the hidden layers of `config` (Eq 33: the weight RMS relaxes as a^(2t));
    None when the run's length is unknown (a user objective without ``run.steps``)."""
    lrs, wd = analysis.layer_lrs(config, "hidden")
    return None if lrs is None else float(2 * lrs.mean() * wd * len(lrs))
