"""The Ray executor (``pip install 'lrtransfer[ray]'``): the same runs as Ray tasks, on a local Ray
instance or an existing cluster (`address`).

Each task (``num_cpus=threads``, and ``num_gpus=gpus_per_run`` when given: a fraction packs
several runs on a GPU, and Ray sets each task's ``CUDA_VISIBLE_DEVICES``) trains into a temporary
folder on whichever node runs it, without a store, and returns its records
(`worker.train_detached`). The driver — this process — writes the run folder (config.yaml,
metrics.jsonl, alignment.jsonl, summary.json) and the store rows from those records, with the
same `record.record_run` as a local run, so both executors leave identical records. A run in flight
when the driver is killed is lost (it has no checkpoint here) and is trained again by the re-run.
"""

from __future__ import annotations

from pathlib import Path

from lrtransfer.config import dump_yaml, validate
from lrtransfer.records import store
from lrtransfer.records.record import CONFIG, RunRecords, reconcile, record_run, write_streams
from lrtransfer.sweep import worker
from lrtransfer.sweep.placement import Placement, check_cluster, ray_options
from lrtransfer.sweep.progress import SweepProgress
from lrtransfer.sweep.tasks import Outcome, Task, by_cost, outcome_of


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError("executor: 'ray' needs the ray extra: pip install 'lrtransfer[ray]'") from None
    return ray


class RayExecutor:
    """Runs tasks on Ray with `threads` CPUs each; starts a local Ray instance with workers × threads
    CPUs unless Ray is already initialised or `address` names a cluster to join."""

    def __init__(self, workers: int | None = None, threads: int = 1, address: str | None = None,
                 progress: bool | None = None, placement: Placement | None = None) -> None:
        from lrtransfer.sweep.local import default_workers

        self.ray = _ray()
        self.workers = default_workers(threads) if workers is None else workers
        if self.workers < 1 or threads < 1:
            raise ValueError(f"workers/threads: must be >= 1, got {self.workers}/{threads}")
        self.threads, self.address, self.progress = threads, address, progress
        placement = placement or Placement()
        placement.check_ray()
        self.gpus_per_run = placement.gpus_per_run
        self._owned = False  # whether close() shuts down the Ray instance this executor started

    def run(self, tasks: list[Task], label: str) -> list[Outcome]:
        """Submit every task, then record each as it finishes; one `Outcome` per task."""
        if not tasks:
            return []
        self._start()
        # max_retries: Ray re-runs a task whose worker or node died (never one whose training raised)
        remote = self.ray.remote(**ray_options(self.threads, self.gpus_per_run), max_retries=3)(worker.train_detached)
        db, pending, outcomes = store.open(tasks[0].store), {}, []
        with SweepProgress(label, tasks, self.workers, self.progress) as bar:
            for task in by_cost(tasks):
                if reconcile(task.folder, db, task.config, task.sweep) is not None:  # finished before
                    outcomes.append(Outcome(task, store.SKIPPED))
                    bar.advance(outcomes[-1])
                    continue
                run_id = db.start_run(task.config, sweep=task.sweep)
                pending[remote.remote(task.config, self.threads, task.phase, task.arm)] = (task, run_id)
            while pending:
                [ref], _ = self.ray.wait(list(pending), num_returns=1)
                task, run_id = pending.pop(ref)
                outcomes.append(self._record(ref, task, run_id, db))
                bar.advance(outcomes[-1])
        return outcomes

    def _record(self, ref, task: Task, run_id: int, db: store.RunStore) -> Outcome:
        """Write a finished task's run folder and store rows (a failed task is recorded `failed`)."""
        folder = Path(task.folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG).write_text(dump_yaml(validate(task.config)))  # a RunConfig or an ObjectiveConfig
        try:
            records: RunRecords = self.ray.get(ref)
        except self.ray.exceptions.RayError as err:
            cause = getattr(err, "cause", None) or err
            error = f"{type(cause).__name__}: {cause}"
            record_run(folder, db, run_id, RunRecords({"status": store.FAILED, "error": error}))
            return Outcome(task, store.FAILED, error)
        records.summary = {**records.summary, "folder": str(folder)}
        write_streams(folder, records)
        record_run(folder, db, run_id, records)
        return outcome_of(task, records.summary)

    def _start(self) -> None:
        if not self.ray.is_initialized():
            local = {"num_cpus": self.workers * self.threads, "include_dashboard": False}
            self.ray.init(**({"address": self.address} if self.address else local))
            self._owned = True
        check_cluster(self.ray.cluster_resources(), self.gpus_per_run)

    def close(self) -> None:
        """Shut down the Ray instance if this executor started it."""
        if self._owned:
            self.ray.shutdown()
            self._owned = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
