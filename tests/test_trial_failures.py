"""A trial that dies costs that trial only, through the real command line: one sweep whose arms each
fail the way real training does (tests/failing_objectives.py) — the worker exits or is killed, the
objective exits, hangs past the spec's timeout, changes directory, logs nothing or reports what it
must not. Each row of `CASES` is one arm: how the store records it and what its error says. Then a
Ctrl-C of the driver, and a script that starts its study without a ``__main__`` guard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lrtransfer.cli import app
from lrtransfer.records import store
from lrtransfer.study import report as study_report

HERE = Path(__file__).parent
TIMEOUT_S = 4

# (arm = the objective's mode, status in the store, fragments of its error)
CASES = [
    ("os_exit", "failed", ["the worker process exited with code 7", "last output: about to exit"]),
    ("sigkill", "failed", ["the worker process was killed by SIGKILL", "last output: about to be killed"]),
    ("sys_exit", "failed", ["SystemExit: 3"]),
    ("keyboard_interrupt", "failed", ["KeyboardInterrupt"]),
    ("hang", "failed", [f"timeout after {TIMEOUT_S} s"]),
    ("silent", "failed", ["no loss logged"]),
    ("override", "failed", ["trial.finish: 'status' is a summary value the study sets itself"]),
    ("tensor", "failed", ["trial.finish: acc: Tensor is not JSON-serialisable"]),
    ("diverge", "diverged", []),
    ("chdir", "done", []),
    ("standard", "done", []),  # the rule arm: a trial that trains
]


def env() -> dict[str, str]:
    """The test's environment with tests/ importable (the objectives' module), one torch thread."""
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def spec(tmp: Path, modes: list[str], **fields) -> Path:
    arms = {mode: {"params.mode": mode} for mode in modes}
    raw = {"name": "failures", "base": {"objective": "failing_objectives:objective", "base_width": 8,
                                        "params": {"elsewhere": str(tmp / "elsewhere")}},
           "lrs": [0.01], "rules": ["standard"], "arms": arms, "protocol": "one_phase", **fields}
    (tmp / "elsewhere").mkdir(exist_ok=True)
    (tmp / "spec.yaml").write_text(yaml.safe_dump(raw))
    return tmp / "spec.yaml"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The sweep of every failing arm, run once by the real CLI with two workers."""
    tmp = tmp_path_factory.mktemp("failures")
    modes = [arm for arm, _, _ in CASES if arm != "standard"]
    path = spec(tmp, modes, timeout=TIMEOUT_S)
    proc = subprocess.run([sys.executable, "-m", "lrtransfer.cli", "sweep", str(path), "--out", str(tmp / "out"),
                           "--workers", "2"], capture_output=True, text=True, env=env(), timeout=300)
    runs = store.open(tmp / "out" / "runs.db").runs()
    arms = {row["arm"]: row["config_hash"] for row in _plan(tmp / "out")}
    return tmp, proc, runs.set_index("config_hash").loc[[arms[arm] for arm, _, _ in CASES]].assign(
        arm=[arm for arm, _, _ in CASES]).set_index("arm")


def _plan(out: Path) -> list[dict]:
    from lrtransfer.sweep import read_plan

    return read_plan(out).to_dict("records")


def test_the_sweep_trains_every_other_run_and_exits_1(swept):
    tmp, proc, runs = swept
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"this call trained 2 done, 1 diverged, {len(CASES) - 3} failed" in proc.stdout
    assert not (runs["status"] == "running").any()


@pytest.mark.parametrize(("arm", "status", "error"), CASES, ids=[c[0] for c in CASES])
def test_a_failing_trial_costs_that_trial_only(swept, arm, status, error):
    tmp, proc, runs = swept
    row = runs.loc[arm]
    assert row["status"] == status, row.get("error")
    assert all(part in str(row["error"]) for part in error), row["error"]
    if error:
        assert all(part in proc.stdout for part in error)  # the sweep's FAILED line says it too


def test_an_objective_that_changes_directory_writes_under_out(swept):
    tmp, _, runs = swept
    assert list((tmp / "elsewhere").iterdir()) == []
    assert (Path(runs.loc["chdir", "folder"]) / "summary.json").is_file()
    assert Path(runs.loc["chdir", "folder"]).is_relative_to(tmp / "out")


def test_the_report_of_arms_without_a_stable_run_says_so(swept, monkeypatch):
    tmp, _, _ = swept
    monkeypatch.setattr(study_report, "theory_figures", lambda out: [])
    result = CliRunner().invoke(app, ["report", str(tmp / "out")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"{len(CASES) - 3} of {len(CASES)} runs failed" in lines[0]
    for arm in ("os_exit", "hang", "silent", "diverge"):
        assert f"{arm}: no stable LR at 1× — no stable run" in lines
    assert (tmp / "out" / "report.html").is_file()


def test_ctrl_c_of_the_driver_stops_the_sweep_and_its_runs_resume(tmp_path):
    """SIGINT to the terminal's process group: the workers ignore it, the driver stops them and
    exits 130; the run in flight stays `running` (resumed by the next call), nothing is `failed`."""
    path = spec(tmp_path, ["hang"], rules=[])
    proc = subprocess.Popen([sys.executable, "-m", "lrtransfer.cli", "sweep", str(path), "--out",
                             str(tmp_path / "out"), "--workers", "1"], env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    db, deadline = tmp_path / "out" / "runs.db", time.monotonic() + 60
    while not (db.is_file() and len(store.open(db).runs())) and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert workers, "the worker is training"
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert "Traceback" not in proc.stderr.read()
    assert not any(Path(f"/proc/{p}").exists() and _state(p) != "Z" for p in workers)
    assert list(store.open(db).runs()["status"]) == ["running"]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def test_a_script_without_a_main_guard_is_told_so(tmp_path):
    """The workers import the script to find its objective, which starts the study again: the error
    says to guard the call, instead of blaming "another sweep driver" (the user's own process)."""
    (tmp_path / "mystudy.py").write_text(textwrap.dedent("""\
        import lrtransfer

        def objective(trial):
            trial.log(0, 1.0)

        lrtransfer.Study(objective, base_width=8, lrs=[0.01], rules=["standard"], protocol="one_phase").run(
            "out", workers=1, progress=False)
    """))
    proc = subprocess.run([sys.executable, "mystudy.py"], cwd=tmp_path, capture_output=True, text=True, env=env(),
                          timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "ObjectiveError: base.objective: cannot import 'mystudy:objective'" in last
    assert 'under `if __name__ == "__main__":`' in last and "another sweep driver" not in proc.stderr
    assert len(store.open(tmp_path / "out" / "runs.db").runs()) == 0
