"""The notes under a study report's verdicts: what the sweep lacks, what its adaptive stages added,
how many weight-decay timescales its runs span, where blow-ups were taken as unstable."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from lrtransfer import analysis
from lrtransfer.analysis.frames import in_phase
from lrtransfer.analysis.transfer import UNKNOWN
from lrtransfer.config import TrialConfig, validate
from lrtransfer.phases import Phase
from lrtransfer.records.store import FAILED


def missing_notes(results: pd.DataFrame, spec: dict[str, Any], best: pd.DataFrame | None = None) -> list[str]:
    """What an unfinished or failed sweep lacks: runs without a result, stages that were never
    planned (no phase-1 pick, no phase-2 standard run), arms without a verdict. [] when complete."""
    runs = results.drop_duplicates("config_hash")
    count = runs["status"].value_counts()
    notes = []
    if waiting := [f"{count[s]} {s}" for s in UNKNOWN if s in count]:
        notes.append(f"{sum(runs['status'].isin(UNKNOWN))} of {len(runs)} runs have no result yet "
                     f"({', '.join(waiting)}; running: in flight, or killed): re-run the sweep on this folder to "
                     "finish them. Verdicts and figures use the finished runs only.")
    if FAILED in count:
        notes.append(f"{count['failed']} of {len(runs)} runs failed (status 'failed' in the run table; the store "
                     "holds each error); they count as unstable LRs.")
    one, two = in_phase(results, Phase.ONE), in_phase(results, Phase.TWO)
    picked = analysis.phase1_picks(results[one]) if one.any() else {}
    for arm in dict.fromkeys(results.loc[one, "arm"]):
        if arm not in picked and not ((results["arm"] == arm) & two).any():
            notes.append(f"arm {arm}: phase 2 was not planned: no phase-1 LR of it finished with a finite loss "
                         "(every seed), so there is no LR to freeze, and no verdict.")
    planned = in_phase(results, Phase.DYNAMICS).any()
    if spec.get("dynamics") and not planned and analysis.dynamics_lr(results, best) is None:
        notes.append("dynamics: not planned (no finished phase-2 run of the standard arm); Figures 4, 5 and 16 "
                     "are missing.")
    return notes


def blowup_notes(best: pd.DataFrame) -> list[str]:
    """Curves where finite blow-ups or spikes were taken as unstable (`analysis.blowups`)."""
    if "n_blowup" not in best or not best["n_blowup"].any():
        return []
    where = ", ".join(f"{r.arm} {r.width_mult:g}× ({r.n_blowup})" for r in best[best["n_blowup"] > 0].itertuples())
    return [f"Finite blow-ups or spikes, far above their neighbours on the loss-vs-LR curve, were taken as unstable "
            f"LRs (like a divergence: they bound the fit) at {where}; the figure marks them ✗."]


def partial_note(stage: str | None) -> list[str]:
    """The banner of a report written while the sweep runs (``stage``: the one just finished); none at the end."""
    if stage is None:
        return []
    return [f"PARTIAL REPORT, written after {stage} ({time.strftime('%H:%M:%S')}): the sweep is still running; "
            "later stages add runs, verdicts and figures. It is rewritten after every stage and when the sweep ends."]


def refine_note(results: pd.DataFrame, spec: dict) -> list[str]:
    """How many runs the refine stage added (phase-2 seeds beyond the spec's)."""
    seeds = spec.get("seeds") or [0]
    extra = results[in_phase(results, Phase.TWO) & ~results["seed"].isin(seeds)]
    if extra.empty:
        return []
    where = ", ".join(f"{arm} {m:g}×" for (arm, m), _ in extra.groupby(["arm", "width_mult"]))
    return [f"The refine stage added {extra['config_hash'].nunique()} runs: more seeds at the LRs around the "
            f"optimum where a verdict was inconclusive ({where})."]


def bracket_note(results: pd.DataFrame, spec: dict) -> list[str]:
    """What an adaptive phase 2 (spec ``bracket``) ran: LRs per curve out of the grid."""
    k, grid = spec.get("bracket"), spec.get("lrs") or []
    phase2 = results[in_phase(results, Phase.TWO)]
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
    runs = results[in_phase(results, Phase.TWO) & results["config"].notna()]
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
