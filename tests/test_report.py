"""The static study report: relative links that resolve, escaped text, deterministic output."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from lrtransfer.study.html import _cell, write_report

EVIL = "<script>window.__pwned = 1</script>"


@dataclass
class Fig:  # duck-typed stand-in for lrtransfer.plots.study.FigureInfo
    name: str
    png: Path
    csv: Path
    title: str
    caption: str


def _figure(folder: Path, name: str, caption: str) -> Fig:
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3], [3, 1, 2])
    fig.savefig(folder / f"{name}.png", dpi=50)
    plt.close(fig)
    (folder / f"{name}.csv").write_text("x,y\n1,3\n2,1\n3,2\n")
    return Fig(name, folder / f"{name}.png", folder / f"{name}.csv", f"Title of {name}", caption)


def make_study(root: Path) -> dict:
    """Inputs for ``write_report`` under ``root``: out dir ``root/study``, one figure elsewhere,
    one already inside, runs with absolute and out-dir-relative folders, one diverged, one unrun."""
    out = root / "study"
    figures = [_figure(root / "elsewhere", "lr_sweep", f"Minima should line up. {EVIL}"),
               _figure(out / "figures", "regret", "Regret per width.")]
    runs = pd.DataFrame({
        "phase": [1, 2, 2, 2], "arm": ["standard", "independent", "independent", "none"],
        "width_mult": [1, 2, 4, 4], "lr": [2e-3, 4e-3, 6.4e-2, 8e-3], "seed": [0, 0, 0, 0],
        "status": ["done", "done", "diverged", "done"],
        "final_train_loss": [2.1, 2.0, math.nan, 2.3], "val_loss": [2.2, 2.1, math.nan, 2.4],
        "folder": [str(out / "runs" / "aaa111"), "runs/bbb222", str(out / "runs" / "ccc 333"),
                   str(out / "runs" / "ddd444")],
    })
    for folder in ("aaa111", "bbb222", "ccc 333"):  # ddd444 was planned but never started
        (out / "runs" / folder).mkdir(parents=True)
        (out / "runs" / folder / "config.yaml").write_text("optim: {lr: 0.002}\n")
    verdicts = pd.DataFrame({"arm": ["none", "standard", "independent"],
                             "verdict": ["drifts", "drifts left", "transfers"],
                             "shift_grid_steps": [0.5, -1.0, 0.0], "max_regret": [0.05, 0.2, 0.001]})
    best = pd.DataFrame({"arm": ["independent", "independent"], "width_mult": [1, 4],
                         "best_lr_grid": [4e-3, 4e-3], "best_lr_fit": [3.7e-3, 4.2e-3],
                         "loss": [2.01, 1.9], "regret": [0.0, 0.001], "at_edge": [False, True]})
    return dict(out_dir=out, title="Demo <b>study</b>", verdicts=verdicts, best=best,
                figures=figures, spec_yaml=f"name: demo\nnote: '{EVIL}'\n", runs=runs,
                notes=["Runs span 3 timescales 1/(2ηλ) at the base width.", EVIL])


class Page(HTMLParser):
    """Collects tags (with attributes and the table they sit in) and the text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.section: str | None = None
        self.rows: dict[str, list[list[str]]] = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "section":
            self.section = attrs["id"]
        if tag == "tr":
            self.rows.setdefault(self.section, []).append([])

    def handle_data(self, data):
        self.text.append(data)
        if self.section in self.rows and data.strip():
            self.rows[self.section][-1].append(data.strip())

    def find(self, tag: str) -> list[dict]:
        return [attrs for t, attrs in self.tags if t == tag]


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "runs/bbb222" is relative to the out dir, not to the cwd
    inputs = make_study(tmp_path)
    path = write_report(**inputs)
    return inputs, path, Page(path.read_text(encoding="utf-8"))


def test_images_are_relative_and_exist(study):
    inputs, path, page = study
    srcs = [img["src"] for img in page.find("img")]
    assert len(srcs) == len(inputs["figures"])
    for src in srcs:
        assert not urlparse(src).scheme and not src.startswith("/"), src
        assert (path.parent / unquote(src)).is_file(), src
    assert srcs == ["figures/lr_sweep.png", "figures/regret.png"]  # copied in / left in place
    assert all(img["alt"] for img in page.find("img"))


def test_csv_and_run_links_resolve(study):
    inputs, path, page = study
    hrefs = [a["href"] for a in page.find("a") if not a["href"].startswith(("#", "https:"))]
    configs = [h for h in hrefs if h.endswith("config.yaml")]
    assert configs == ["runs/aaa111/config.yaml", "runs/bbb222/config.yaml",
                       "runs/ccc%20333/config.yaml"]  # the unrun ddd444 has no link
    assert sum(h.endswith(".csv") for h in hrefs) == 2
    for href in hrefs:
        assert (path.parent / unquote(href)).is_file(), href


def test_tables_hold_verdicts_best_and_runs(study):
    inputs, _, page = study
    verdict_rows = page.rows["verdicts"]
    assert verdict_rows[0] == ["arm", "verdict", "shift_grid_steps", "max_regret"]
    assert verdict_rows[1:] == [["none", "drifts", "0.5", "0.05"], ["standard", "drifts left", "-1", "0.2"],
                                ["independent", "transfers", "0", "0.001"]]
    assert page.rows["best"][2] == ["independent", "4", "4.00e-03", "4.20e-03", "1.9", "0.001", "yes"]
    run_rows = page.rows["runs"][1:]
    assert len(run_rows) == len(inputs["runs"])
    assert run_rows[2][5] == "\u2717 diverged" and run_rows[2][6] == "\u2014"
    classes = [tr.get("class") for tr in page.find("tr")]
    assert classes.count("diverged") == 1


def test_everything_is_escaped(study):
    inputs, path, page = study
    assert page.find("script") == [] and page.find("b") == []
    text = "".join(page.text)
    assert text.count(EVIL) == 3  # note, caption, spec: shown as text, never run
    assert "Demo <b>study</b>" in text
    assert "Kosson" in text and "1/(2ηλ)" in text


def test_rewriting_is_idempotent(study):
    inputs, path, _ = study
    first = path.read_bytes()
    listing = sorted(p.relative_to(path.parent) for p in path.parent.rglob("*"))
    assert write_report(**inputs) == path
    assert path.read_bytes() == first
    assert sorted(p.relative_to(path.parent) for p in path.parent.rglob("*")) == listing


def test_missing_figure_raises(tmp_path):
    inputs = make_study(tmp_path)
    inputs["figures"][0].png.unlink()
    with pytest.raises(FileNotFoundError, match="lr_sweep"):
        write_report(**inputs)


@pytest.mark.parametrize("column, value, expected", [
    ("lr", 0.002, ("2.00e-03", True)),
    ("best_lr_fit", 3.7e-3, ("3.70e-03", True)),
    ("fixed_lr", 1e-2, ("1.00e-02", True)),
    ("max_regret", 0.0123456, ("0.01235", True)),
    ("width_mult", 4.0, ("4", True)),
    ("seed", 3, ("3", True)),
    ("diverged_at", 12345.0, ("12345", True)),
    ("shift_grid_steps", -1.5, ("-1.5", True)),
    ("val_loss", math.nan, ("\u2014", True)),
    ("at_edge", True, ("yes", False)),
    ("verdict", "a < b", ("a &lt; b", False)),
    ("diverged_at", None, ("\u2014", False)),
])
def test_cell_format(column, value, expected):
    assert _cell(column, value) == expected
