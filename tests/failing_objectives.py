"""Objectives that fail the way real training does, chosen by ``trial.params["mode"]`` (one sweep arm
each): the worker dies, the objective exits or hangs, or it reports what it must not."""

from __future__ import annotations

import os
import signal
import sys
import time

import torch

import lrtransfer


def _train(trial: lrtransfer.Trial) -> None:
    for step in range(3):
        trial.log(step, 1.0 / (1 + step) + trial.lr)


def _os_exit(trial):
    print("about to exit", flush=True)
    os._exit(7)


def _sigkill(trial):
    print("about to be killed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _sys_exit(trial):
    sys.exit(3)


def _keyboard_interrupt(trial):
    raise KeyboardInterrupt


def _hang(trial):
    time.sleep(600)


def _chdir(trial):
    os.chdir(trial.params["elsewhere"])
    _train(trial)


def _silent(trial):
    pass


def _override(trial):
    _train(trial)
    trial.finish(status="diverged", final_train_loss=-123, steps=99999)


def _tensor(trial):
    _train(trial)
    trial.finish(acc=torch.tensor(0.9))


def _diverge(trial):
    trial.log(0, float("nan"))


MODES = {"ok": _train, "os_exit": _os_exit, "sigkill": _sigkill, "sys_exit": _sys_exit,
         "keyboard_interrupt": _keyboard_interrupt, "hang": _hang, "chdir": _chdir, "silent": _silent,
         "override": _override, "tensor": _tensor, "diverge": _diverge}


def objective(trial: lrtransfer.Trial) -> None:
    MODES[trial.params.get("mode", "ok")](trial)
