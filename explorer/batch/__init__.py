"""Batch rendering: many ``generate`` jobs from one JSON-lines file (``main.py render-batch``).

* :mod:`explorer.batch.jobs`: the job file (validated up front, with line numbers) and each job's outputs;
* :mod:`explorer.batch.worker`: :class:`~explorer.batch.worker.BatchWorker`, which keeps a generation
  stack loaded and runs job after job (plain Python: Ray wraps it as an actor);
* :mod:`explorer.batch.results`: ``results.jsonl`` and the summary table;
* :mod:`explorer.batch.ray_runner`: the driver on Ray (the only module that imports ``ray``; import it
  only from the command, so the GUI and the other commands never load Ray).
"""
