"""Shared test set-up: one torch thread per test process (the suite runs on 2 cores, often in parallel)."""

import torch

torch.set_num_threads(1)
