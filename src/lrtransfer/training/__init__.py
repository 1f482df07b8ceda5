"""Single training runs: build from a `RunConfig`, resume from checkpoints, record to the run store."""

from lrtransfer.training.loop import evaluate, train

__all__ = ["evaluate", "train"]
