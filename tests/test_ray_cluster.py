"""The Ray executor against a real two-node cluster on this machine, as a user runs one (docs/study.md):
`ray start --head` and `ray start --address`, token authentication on, every address on the
loopback range. Killing the worker node's raylet mid-sweep re-runs its runs on the surviving node;
killing the driver mid-sweep and running it again resumes. Either way the store ends identical to
a local sweep of the same spec.

Loopback: Ray replaces ``--node-ip-address 127.0.0.1`` (and "localhost") by the machine's outward
address (`ray._private.services.resolve_ip_for_localhost`), so the nodes use 127.0.0.2, which is
loopback as well. Teardown kills the processes of this cluster by pid (those naming its temp
folder, and their children) rather than `ray stop`, which stops every Ray instance on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrtransfer.records import store
from lrtransfer.sweep import run_sweep

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")  # a dependency of ray
pytestmark = pytest.mark.slow

IP = "127.0.0.2"
TINY = {"run.steps": 40, "run.checkpoint_every": 0, "run.eval_every": 20}
SPEC = {"name": "cluster", "base": {"preset": "lm-tiny", "overrides": TINY}, "widths": [1, 2],
        "lrs": [3e-3, 1e-2], "rules": ["standard"], "protocol": "one_phase"}
COLUMNS = ["config_hash", "status", "final_train_loss", "val_loss", "diverged_at", "steps"]
DRIVER = """
import json, sys
from lrtransfer.sweep import run_sweep
report = run_sweep(json.loads(sys.argv[1]), sys.argv[2], executor="ray", ray_address=sys.argv[3], workers=2,
                   progress=False)
print(json.dumps([o.status for o in report.outcomes]))
"""


def _free_ports(n: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind((IP, 0))
        return [s.getsockname()[1] for s in socks]


class Cluster:
    """A head node and a worker node of 1 CPU each, started with the `ray` CLI, token auth on."""

    def __init__(self, root: Path) -> None:
        self.root, self.temp = root, root / "ray"
        (root / "token").write_text(secrets.token_hex(32))  # any string; `ray get-auth-token --generate` makes one
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(root / "token")}
        self.port, *ports = _free_ports(7)
        self.address = f"{IP}:{self.port}"
        self.tmpdirs: dict[str, Path] = {}
        self._start("head", ["--head", "--port", str(self.port), "--temp-dir", str(self.temp),
                             "--include-dashboard", "false", *self._node_flags(ports)])
        self.start_worker()

    def start_worker(self) -> None:
        """(Re)start the worker node; `worker_port` (its node-manager port) finds its raylet."""
        ports = _free_ports(6)
        self.worker_port = ports[0]
        self._start("worker", ["--address", self.address, *self._node_flags(ports)])

    @staticmethod
    def _node_flags(ports: list[int]) -> list[str]:
        # Two nodes on one host: each needs its own ports (the dashboard agent's default is fixed).
        names = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
        return [x for name, port in zip(names, ports, strict=True) for x in (name, str(port))]

    def _start(self, node: str, args: list[str]) -> None:
        tmpdir = self.tmpdirs[node] = self.root / f"{node}-tmp-{len(self.tmpdirs)}"
        tmpdir.mkdir()  # TMPDIR of the node's workers: where its runs train
        common = ["--node-ip-address", IP, "--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats",
                  "--object-store-memory", str(80 * 2**20)]
        done = subprocess.run([shutil.which("ray"), "start", *args, *common], env={**self.env, "TMPDIR": str(tmpdir)},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"ray start ({node}) failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"

    def driver(self, out: Path) -> subprocess.Popen:
        """`run_sweep(SPEC, out, executor="ray", ray_address=...)` in its own process, as a user runs it;
        its stderr (Ray's logs) goes to ``out.parent / driver.log``."""
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.parent / "driver.log", "a") as log:
            return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(SPEC), str(out), self.address],
                                    env=self.env, stdout=subprocess.PIPE, stderr=log, text=True)

    def worker_raylet(self):
        [raylet] = [p for p in self._processes() if f"--node_manager_port={self.worker_port}" in p.cmdline()]
        return raylet

    def _processes(self) -> list:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            if any(str(self.temp) in arg for arg in p.info["cmdline"] or []):
                found += [p, *p.children(recursive=True)]
        return found

    def close(self) -> None:
        for p in self._processes():
            with contextlib.suppress(psutil.Error):
                p.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("ray") is None:
        pytest.skip("the `ray` command is not on PATH")
    start = time.perf_counter()
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    print(f"two-node cluster up in {time.perf_counter() - start:.1f} s")
    yield c
    c.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The same spec swept by the local executor: the store every Ray sweep must end with."""
    out = tmp_path_factory.mktemp("local")
    assert run_sweep(SPEC, out, workers=2, progress=False).ok
    return _runs(out)


def _runs(out: Path):
    return store.open(out / "runs.db").runs().sort_values("config_hash", ignore_index=True)


def _count_done(out: Path) -> int:
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(out / "runs.db", timeout=5)) as db:
        return db.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0]
    return 0


def _losses_in_flight(tmpdir: Path) -> int:
    """Losses written so far by the runs training in `tmpdir` (a node's TMPDIR)."""
    counts = [0]
    for metrics in tmpdir.glob("lrtransfer-*/metrics.jsonl"):
        with contextlib.suppress(OSError):
            counts.append(metrics.read_bytes().count(b'"train_loss"'))
    return max(counts)


def _log(out: Path) -> str:
    return (out.parent / "driver.log").read_text()[-3000:]


def _wait(condition, timeout: float, proc: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the driver ended early:\n{_log(out)}"
        assert time.monotonic() < deadline, f"timed out:\n{_log(out)}"
        time.sleep(0.02)


def _finish(proc: subprocess.Popen, out: Path) -> list[str]:
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, _log(out)
    return json.loads(stdout.strip().splitlines()[-1])


def test_a_killed_driver_resumes_where_it_stopped(cluster, local, tmp_path):
    out = tmp_path / "sweep"
    first = cluster.driver(out)
    _wait(lambda: _count_done(out) >= 1, 90, first, out)
    first.kill()
    first.wait()
    done_before = set(_runs(out).query("status == 'done'").config_hash)
    again = _finish(cluster.driver(out), out)
    runs = _runs(out)
    assert runs[COLUMNS].equals(local[COLUMNS])  # statuses and final losses bit for bit
    assert len(again) == len(local) - len(done_before) and set(again) == {"done"}  # nothing finished re-trained
    assert (runs.set_index("config_hash").loc[sorted(done_before), "attempts"] == 1).all()
    print(f"driver killed with {len(done_before)} of {len(local)} runs done; the re-run trained {len(again)}")


def _kill_mid_run(cluster: Cluster, out: Path, whole_node: bool) -> list[int]:
    """Sweep into `out`; once a run on the worker node is part-way, SIGKILL its raylet (and with
    `whole_node` its workers too). Checks the store against the local sweep; returns the losses
    written by each run that was killed part-way (its temp folder stays behind)."""
    worker_tmp = cluster.tmpdirs["worker"]
    proc = cluster.driver(out)
    _wait(lambda: _losses_in_flight(worker_tmp) >= 5, 90, proc, out)
    raylet = cluster.worker_raylet()
    for p in [raylet, *(raylet.children(recursive=True) if whole_node else [])]:
        p.kill()
    outcomes = _finish(proc, out)
    assert outcomes == ["done"] * len(SPEC["lrs"]) * len(SPEC["widths"])  # none failed
    assert not raylet.is_running()
    return [m.read_bytes().count(b'"train_loss"') for m in worker_tmp.glob("lrtransfer-*/metrics.jsonl")]


def test_a_killed_worker_raylet_loses_nothing(cluster, local, tmp_path):
    # What Ray does here depends on the moment: the task's worker process outlives its raylet for
    # a moment, and either finishes the run and hands its result to the driver, or dies with it
    # and Ray re-runs the task on the head. Either way the store is the same.
    left = _kill_mid_run(cluster, tmp_path / "sweep", whole_node=False)
    runs = _runs(tmp_path / "sweep")
    assert runs[COLUMNS].equals(local[COLUMNS]) and (runs.attempts == 1).all()
    print(f"raylet killed; runs killed part-way (losses written): {left}")


def test_a_killed_worker_node_has_its_run_rerun_on_the_head(cluster, local, tmp_path):
    cluster.start_worker()
    left = _kill_mid_run(cluster, tmp_path / "sweep", whole_node=True)
    runs = _runs(tmp_path / "sweep")
    assert runs[COLUMNS].equals(local[COLUMNS]) and (runs.attempts == 1).all()
    assert len(left) == 1 and 5 <= left[0] < TINY["run.steps"], left  # killed part-way, so trained again
    print(f"worker node killed with a run at {left[0]} of {TINY['run.steps']} steps; all {len(runs)} runs done")
