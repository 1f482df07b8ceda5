"""Running a study: the sweep, a partial report after each stage, then the final report.

`run_study(name_or_spec, out)` runs (or resumes) a sweep and then writes its report; `Study` is the
same for the user's own model and training loop (an objective function, `lrtransfer.Trial`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrtransfer import analysis, sweep
from lrtransfer.objectives.load import objective_ref
from lrtransfer.study.catalogue import study_names, study_spec
from lrtransfer.study.report import write_study_report

log = logging.getLogger("lrtransfer.study")


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
