"""The README's Python tour runs as written, and its set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.slow
def test_python_tour_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in blocks("python"):
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["summary"]["status"] == "done"
    assert (tmp_path / "runs" / "tour" / "runs.db").is_file()
    df = namespace["df"]
    assert set(df["step"]) == {0, 10, 20} and df["alignment_ratio"].notna().all()
    assert set(df["role"]) == {"input", "hidden", "output"}


def test_ci_runs_the_readme_test_command():
    test_command = [b for b in blocks("bash") if "pytest" in b][0].strip()
    ci = (README.parent / ".ci" / "run").read_text()
    assert test_command in ci
