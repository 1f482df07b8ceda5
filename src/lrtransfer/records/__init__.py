"""What a run writes and reads back: its folder and its rows in the run store, made to survive a kill.

* `store` — the run store: one SQLite file (WAL) per study, with a row per run, its metric series and
  alignment records; safe for concurrent writers (``lrtransfer.store.open(path)``);
* `record` — the one path that records a run when it ends: the files of its folder (``config.yaml``,
  ``metrics.jsonl``, ``alignment.jsonl``, ``summary.json``) and its store rows; `reconcile` repairs a kill;
* `runlog` — the append-only metric stream of a run folder, trimmed back to the checkpoint on resume;
* `checkpoint` — checkpoints with checksums, the latest and the previous, so a killed run resumes bit for bit;
* `atomic` — atomic, durable file writes (temp file, fsync, rename): a reader sees the old file or the new one;
* `jsonl` — strict JSON (non-finite floats as strings) and JSON-lines streams that skip a torn line.
"""
