"""A study objective that is a command: any launcher (torchrun, srun, a shell script) trains the trial.

``base: {command: "torchrun --standalone --nproc_per_node=2 -m train --lr={lr} --width={width}
--out={folder}", base_width: 64}`` is this module's `objective` with the command in its params.
For each trial it fills the ``{name}`` fields from the trial's values (`script.VALUES`) and
the spec's params, runs the command in the run folder with the ``LRTRANSFER_*`` variables
(`script`), its output in ``command.out``/``command.err`` there, and watches the losses file
the script appends to (`lrtransfer.report_loss`): a loss that diverges stops the command at once.
When the command ends, every reported row goes to `Trial.log`, so recording, divergence, resume and
status are those of any objective. A non-zero exit is ``failed`` with the tail of its stderr.

Resume: the command runs again in the same folder (the script resumes from its own checkpoint
there, if it writes one); a reported step at or before an earlier one drops the rows from that
step on, so a resumed script's records match an uninterrupted one's.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import shlex
import signal
import string
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrtransfer.objectives.script import VALUES, as_text, trial_env
from lrtransfer.records import jsonl

if TYPE_CHECKING:
    from lrtransfer.objectives.trial import Trial

OBJECTIVE = "lrtransfer.objectives.command:objective"
OWN_PARAMS = ("command", "losses")  # params of the objective itself; the others fill the command
LOSSES_FILE = "losses.jsonl"
STDOUT, STDERR = "command.out", "command.err"
POLL_S = 0.5  # how often the losses file is read while the command runs
TAIL_LINES = 20  # of stderr, in a failed trial's error
MAX_STDERR = 1 << 20  # bytes of stderr searched for the first exception line
EXCEPTION_LINE = re.compile(r"^(\[rank\d+\]:\s*)?([\w.]+\.)?\w*(Error|Exception)(:|$)")
LAUNCHER_ERROR = "ChildFailedError"  # torchrun's own exception, after its ranks' (which name the cause)
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL after this long (torchrun stops its ranks on SIGTERM)


class CommandFailed(RuntimeError):
    """The command exited non-zero, or reported no loss; the message carries its stderr's tail."""


def template_fields(command: str) -> list[str]:
    """The ``{name}`` fields of `command` (``{{`` is a literal brace); a ValueError if malformed."""
    try:
        parsed = list(string.Formatter().parse(command))
    except ValueError as err:
        raise ValueError(f"{command!r}: {err} (write a literal brace as {{{{ or }}}})") from None
    fields = [name for _, name, spec, conversion in parsed if name is not None]
    if any(not name.isidentifier() for name in fields) or any(c for _, n, _, c in parsed if n is not None and c):
        raise ValueError(f"{command!r}: fields are plain names like {{lr}}")
    return fields


def check_command(command: str, params: Mapping[str, Any]) -> None:
    """Every field of `command` is a trial value or a key of `params`; a ValueError naming the one that is not."""
    if not shlex.split(command):
        raise ValueError("is empty")
    for name in template_fields(command):
        if name not in VALUES and name not in params:
            raise ValueError(f"{{{name}}} is neither a trial value ({'|'.join(VALUES)}) nor a key of params")


def argv(command: str, values: Mapping[str, Any]) -> list[str]:
    """The command's arguments, each field filled in after splitting (a path with spaces stays one argument)."""
    return [part.format(**{k: as_text(v) for k, v in values.items()}) for part in shlex.split(command)]


def trial_values(trial: Trial, losses: Path) -> dict[str, Any]:
    """`script.VALUES` of a trial."""
    values = {name: getattr(trial, name) for name in VALUES if name not in ("no_decay", "losses", "folder")}
    return {**values, "no_decay": trial.config.optim.no_decay, "folder": trial.folder.resolve(), "losses": losses}


def objective(trial: Trial) -> None:
    """Run ``trial.params["command"]`` as the trial (see the module doc)."""
    params = {k: v for k, v in trial.params.items() if k not in OWN_PARAMS}
    command = trial.params.get("command")
    if not isinstance(command, str):
        raise ValueError(f"params.command: expected the command as a string, got {command!r}")
    check_command(command, params)
    losses = trial.folder.resolve() / trial.params.get("losses", LOSSES_FILE)  # the command runs in the folder
    values = trial_values(trial, losses)
    if trial.steps is None and "steps" in template_fields(command):
        raise ValueError("params.command: uses {steps}, but run.steps is not set")
    env = {**os.environ, **trial_env(values, params)}
    env.setdefault("OMP_NUM_THREADS", str(_threads()))
    code, diverged, tail = run_watched(argv(command, {**params, **values}), trial.folder, env, losses,
                                       trial.config.run.max_loss)
    rows = reported(losses)
    for row in rows:
        trial.log(row["step"], row["loss"], **{k: v for k, v in row.items() if k not in ("step", "loss")})
    if code != 0 and not diverged:
        raise CommandFailed(f"{_exit_text(code)}; {tail}")
    if not rows:
        raise CommandFailed(f"the command reported no loss: call lrtransfer.report_loss(step, loss) on rank 0, "
                            f"or give the file it writes as base.losses ({losses} is empty)")


def run_watched(args: list[str], folder: Path, env: Mapping[str, str], losses: Path,
                max_loss: float) -> tuple[int, bool, str]:
    """Run `args` in `folder` until it exits, or stop it when a new row of `losses` diverges;
    (exit code, whether it was stopped for divergence, the tail of this run's stderr)."""
    seen = losses.stat().st_size if losses.is_file() else 0  # rows of an earlier attempt are not new
    with open(folder / STDOUT, "ab") as out, open(folder / STDERR, "ab") as err:
        start = err.tell()
        proc = subprocess.Popen(args, cwd=folder, env=dict(env), stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=_die_with_parent)
        diverged = False
        try:
            while proc.poll() is None and not diverged:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=POLL_S)
                seen, new = _new_rows(losses, seen)
                diverged = any(not math.isfinite(r["loss"]) or r["loss"] > max_loss for r in new)
        finally:
            _stop(proc)
    return proc.returncode, diverged, _stderr_text(folder / STDERR, start)


def reported(path: Path) -> list[dict[str, Any]]:
    """The rows of a losses file, ``step`` and ``loss`` as numbers; a step at or before an earlier
    one (the script restarted, e.g. from its checkpoint) replaces the rows from that step on."""
    rows: list[dict[str, Any]] = []
    for raw in jsonl.read(path):
        row = _row(raw, path)
        while rows and rows[-1]["step"] >= row["step"]:
            rows.pop()
        rows.append(row)
    return rows


def _row(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    loss = raw.get("loss", raw.get("train_loss"))
    if not isinstance(raw.get("step"), int) or loss is None:
        raise CommandFailed(f"{path.name}: a row needs an integer step and a loss, got {raw}")
    metrics = {k: float(v) for k, v in raw.items() if k not in ("step", "loss", "train_loss")}
    return {"step": raw["step"], "loss": float(loss), **metrics}  # float() reads "nan" and "inf" too


def _new_rows(path: Path, offset: int) -> tuple[int, list[dict[str, Any]]]:
    """The complete lines appended to `path` after byte `offset`, and the offset after them."""
    if not path.is_file():
        return offset, []
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read()
    complete = text[: text.rfind(b"\n") + 1]
    rows = []
    for line in complete.splitlines():
        try:
            rows.append(_row(jsonl.loads(line.decode()), path))
        except (ValueError, CommandFailed, AttributeError):
            continue  # judged when the command has ended (`reported`)
    return offset + len(complete), rows


def _stop(proc: subprocess.Popen) -> None:
    """End the command and everything it started (its own process group): SIGTERM, then SIGKILL."""
    signals = [(signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)] if proc.poll() is None else []
    for sig, wait in signals:
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    _signal_group(proc.pid, signal.SIGKILL)  # what the command left running when it ended


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stderr_text(path: Path, start: int) -> str:
    """What a failed trial's error shows of the stderr written after byte `start`: its first
    exception line (under torchrun, the rank that failed first, before the launcher's summary) and
    its last `TAIL_LINES` non-blank lines."""
    with open(path, "rb") as f:
        f.seek(start)
        lines = [line for line in f.read(MAX_STDERR).decode(errors="replace").splitlines() if line.strip()]
        f.seek(max(start, f.seek(0, os.SEEK_END) - 8192))
        tail = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()][-TAIL_LINES:]
    first = next((line.strip() for line in lines if EXCEPTION_LINE.match(line) and LAUNCHER_ERROR not in line), None)
    found = f"first error in its stderr: {first}; " if first else ""
    return found + f"the end of its stderr ({STDERR}):\n" + "\n".join(tail)


def _exit_text(code: int) -> str:
    if code < 0:
        return f"the command was killed by {signal.Signals(-code).name}"
    return f"the command exited with code {code}"


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when the worker that started it dies (Linux), so a killed
    sweep leaves no command running."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
