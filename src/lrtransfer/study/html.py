"""The study report's page: one static ``report.html`` that opens offline.

``write_report`` turns a study's tables (verdicts, best LR per arm and width, runs), its figures
(PNG + CSV, see ``lrtransfer.plots.study``) and its sweep spec into a single HTML page with inline
CSS, no scripts and only relative links: images and CSVs under ``out_dir/figures`` and each run's
``runs/<hash>/config.yaml``. Every caller-supplied string is escaped, so a caption or spec holding
``<script>`` shows as text. The output is deterministic: rewriting the report gives the same bytes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from lrtransfer.records import atomic
from lrtransfer.records.record import CONFIG
from lrtransfer.records.store import DIVERGED, FAILED

PAPER = ("Kosson, Welborn, Liu, Jaggi and Chen (2025), <em>Weight decay may matter more than μP "
         "for learning rate transfer in practice</em>, "
         '<a href="https://arxiv.org/abs/2510.19093">arXiv:2510.19093</a>')

INTRO = f"""This report is a learning-rate transfer study after {PAPER}. The base learning rate
is swept at several widths under each arm (a weight-decay rule, or another named variant). The LR
<em>transfers</em> when the LR that is best at the base width is still (near) best at every wider
width. Read the verdicts first. The <em>shift</em> is the slope of log2(best LR) against
log2(width multiplier) over all widths, in octaves per width doubling, with its 90% interval from
the fitted optima's bootstrap; <em>regret</em> is the extra loss paid by reusing the base-width best
LR at a wider width, with its interval. An arm <em>transfers</em> when the whole shift interval lies
within the tolerance (±0.25 octaves per doubling) and the regret is within the noise; it <em>does not
transfer</em> when the interval lies entirely outside; otherwise it is <em>inconclusive</em>, and the
verdict table says the cheapest next step: more seeds at the LRs named (the sweep's <code>refine</code>
stage adds them) or a finer LR grid. Then check the figures: loss-vs-LR curves whose minima (stars,
with their intervals) line up across widths mean the LR transfers. Runs that diverged are marked in
the run table."""

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #222; max-width: 1150px; margin: 2em auto; padding: 0 1.5em; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
nav a { margin-right: 1em; }
table.data { border-collapse: collapse; font-size: 13px; margin: .5em 0; }
table.data th, table.data td { border: 1px solid #ddd; padding: 3px 8px; }
table.data th { background: #f2f2f2; text-align: left; }
table.data tr:nth-child(even) td { background: #fafafa; }
table.data td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.data tr.diverged td { background: #fde8e8; color: #8a1c1c; }
table.data tr.failed td { background: #fff4d6; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 14px; color: #444; max-width: 900px; }
pre { background: #f6f6f6; padding: 1em; overflow: auto; font-size: 13px; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<h1>{title}</h1>
<nav>{nav}</nav>
{body}
</body>
</html>
"""

SECTIONS = {"verdicts": "Verdicts", "recommend": "Recommended LR at wider widths",
            "best": "Best learning rate per arm and width",
            "figures": "Figures", "spec": "Sweep spec", "runs": "Runs"}
RECOMMEND_INTRO = """<p>The base LR to use at a width beyond the widest one measured: each arm's fitted optimum
moved along its line in log-width, with the 90% interval from the bootstrap draws of the optima;
the hidden layers' η and λ it gives under the arm's rule (Eq 6-8) and how many weight-decay
timescales a run of the same length spans there (Eq 33-36). <code>lrtransfer recommend DIR --width W</code>
prints the same for any width, with the per-role table and a ready-to-paste
<code>lrtransfer.param_groups</code> call.</p>
"""
DIVERGED_MARK = "\u2717 "  # ✗ before the status of a diverged run


def write_report(out_dir: str | Path, *, title: str, verdicts: pd.DataFrame, best: pd.DataFrame,
                 figures: Sequence[Any], spec_yaml: str, runs: pd.DataFrame,
                 notes: Iterable[str] = (), recommendation: pd.DataFrame | None = None) -> Path:
    """Write ``out_dir/report.html`` and return its path.

    ``verdicts`` and ``best`` are rendered column by column (columns named ``lr`` / ``*_lr_*``
    in scientific notation). ``figures`` are objects with ``name``, ``png``, ``csv``, ``title``
    and ``caption`` (``lrtransfer.plots.study.FigureInfo``); files outside ``out_dir`` are copied
    into ``out_dir/figures``. ``runs`` needs a ``folder`` column (absolute, or relative to the
    current directory or to ``out_dir``); each row links to the folder's ``config.yaml`` when it
    exists (without a ``folder`` column, as for a sweep run elsewhere, the table has no links).
    ``notes`` are plain-text paragraphs placed after the introduction; ``recommendation``, when
    given, is the table of base LRs extrapolated to wider widths (`Analysis.recommend`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paragraphs = [INTRO, *(escape(n) for n in notes)]
    sections = {
        "verdicts": _table(verdicts),
        "recommend": RECOMMEND_INTRO + _table(recommendation) if recommendation is not None else None,
        "best": _table(best),
        "figures": "\n".join(_figure(f, out_dir) for f in figures),
        "spec": f"<pre>{escape(spec_yaml)}</pre>",
        "runs": _runs_table(runs, out_dir),
    }
    sections = {key: html for key, html in sections.items() if html is not None}
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs) + "\n" + "\n".join(
        f'<section id="{key}">\n<h2>{SECTIONS[key]}</h2>\n{html}\n</section>'
        for key, html in sections.items())
    nav = "".join(f'<a href="#{key}">{SECTIONS[key]}</a>' for key in sections)
    path = out_dir / "report.html"
    atomic.write_text(path, PAGE.format(title=escape(title), css=CSS, nav=nav, body=body))
    return path


def _is_lr_column(column: Any) -> bool:
    return "lr" in str(column).lower().split("_")


def _cell(column: Any, value: Any) -> tuple[str, bool]:
    """(escaped text, is numeric) for one table cell; missing values show as an em dash."""
    if pd.api.types.is_bool(value):
        return ("yes" if value else "no"), False
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "\u2014", pd.api.types.is_float(value)
    if pd.api.types.is_float(value):
        if not _is_lr_column(column) and float(value).is_integer() and abs(value) < 1e6:
            return str(int(value)), True  # steps and widths that NaNs turned into floats
        return (f"{value:.2e}" if _is_lr_column(column) else f"{value:.4g}"), True
    if pd.api.types.is_integer(value):
        return str(value), True
    return escape(str(value)), False


def _table(df: pd.DataFrame, row_classes: Sequence[str] | None = None,
           cells: dict[Any, list[str]] | None = None) -> str:
    """An escaped ``<table class="data">``; ``cells`` replaces a column's cells with given HTML."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, record in enumerate(df.itertuples(index=False, name=None)):
        tds = []
        for column, value in zip(df.columns, record):
            if cells is not None and column in cells:
                tds.append(f"<td>{cells[column][i]}</td>")
                continue
            text, numeric = _cell(column, value)
            tds.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        cls = f' class="{escape(row_classes[i])}"' if row_classes and row_classes[i] else ""
        rows.append(f"<tr{cls}>{''.join(tds)}</tr>")
    return (f'<table class="data">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody>\n</table>")


def _href(target: Path, out_dir: Path) -> str:
    """A relative, URL-quoted link from ``out_dir`` to ``target``."""
    rel = os.path.relpath(target.resolve(), out_dir.resolve())
    return quote(Path(rel).as_posix())


def _place(src: Path, out_dir: Path, what: str) -> Path:
    """``src`` if it lies under ``out_dir``, else its copy in ``out_dir/figures``."""
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"report: {what} does not exist: {src}")
    if src.resolve().is_relative_to(out_dir.resolve()):
        return src
    dst = out_dir / "figures" / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _figure(fig: Any, out_dir: Path) -> str:
    """One ``<figure>``: the image, its title and caption, and a link to the plotted numbers."""
    png = _place(fig.png, out_dir, f"figure {fig.name!r} png")
    csv = _place(fig.csv, out_dir, f"figure {fig.name!r} csv") if fig.csv else None
    link = f' <a href="{_href(csv, out_dir)}">Data (CSV)</a>' if csv else ""
    return (f'<figure id="fig-{escape(str(fig.name))}">\n'
            f'<img src="{_href(png, out_dir)}" alt="{escape(str(fig.title))}">\n'
            f"<figcaption><strong>{escape(str(fig.title))}.</strong> "
            f"{escape(str(fig.caption))}{link}</figcaption>\n</figure>")


def _run_folder(folder: Any, out_dir: Path) -> Path:
    """Resolve a run folder: absolute, else relative to the cwd, else relative to ``out_dir``."""
    path = Path(str(folder))
    if path.is_absolute() or path.exists() or not (out_dir / path).exists():
        return path
    return out_dir / path


def _runs_table(runs: pd.DataFrame, out_dir: Path) -> str:
    """The run table: each ``folder`` links to its ``config.yaml``; diverged rows are marked."""
    if "folder" not in runs.columns:
        return _table(runs.reset_index(drop=True))
    links = []
    for folder in runs["folder"]:
        path = _run_folder(folder, out_dir)
        config = path / CONFIG
        name = escape(path.name)
        links.append(f'<a href="{_href(config, out_dir)}">{name}</a>' if config.is_file() else name)
    status = runs["status"].astype(str).tolist() if "status" in runs.columns else [""] * len(runs)
    cells = {"folder": links}
    if "status" in runs.columns:  # a marker as well as a colour, so it survives printing
        cells["status"] = [(DIVERGED_MARK if s == DIVERGED else "") + escape(s) for s in status]
    classes = [s if s in (DIVERGED, FAILED) else "" for s in status]
    return _table(runs.reset_index(drop=True), row_classes=classes, cells=cells)
