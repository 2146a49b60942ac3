"""The job file of ``main.py render-batch``: one JSON object per line, checked before anything runs.

A job is a ``generate`` run: its keys are ``id`` (required; letters, digits, ``.``, ``_``, ``-``, at
most 100 characters, unique in the file), ``eval`` (bool: score the run with ``main.py eval``'s
consistency metrics, and against exact renders when it shows a procedural room:
:func:`explorer.truth.truth_metrics`) and the ``generate`` flags of :data:`JOB_FIELDS` under their
:class:`~explorer.generate.GenerateArgs` names (``image`` or ``scene_seed``, ``trajectory``,
``segments``, ``steps``, ``seed``, ``prompt``, ``backend``, ``model``, ``memory_weights``, ...). A
job with neither ``image`` nor ``scene_seed`` uses the bundled sample scene. Relative file paths are
relative to the job file's folder; ``trajectory`` is a builder name
(:data:`~explorer.generate.TRAJECTORIES`), a builder with parameters (``{"builder": "orbit",
"degrees": 60, "radius": 1.5}`` or the ``generate`` spelling ``"orbit:degrees=60,radius=1.5"``;
:data:`~explorer.generate.BUILDER_PARAMS`) or a RealEstate10K / camera-path file.

Example line::

    {"id": "kitchen-orbit", "image": "photos/kitchen.jpg", "trajectory": "orbit", "segments": 5, "seed": 3}

Job ``ID`` writes ``DIR/ID/ID.mp4``, ``DIR/ID/ID.json`` and ``DIR/ID/ID.cameras.txt`` exactly as
``main.py generate --out DIR/ID/ID.mp4`` does (one atomic output set); with ``eval`` also
``DIR/ID/ID.metrics.json``.
"""

from __future__ import annotations

import json
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from explorer.generate import BUILDER_PARAMS, GenerateArgs, parse_builder

#: ``GenerateArgs`` fields a job may set (the rest belong to the worker: output paths, device, memory files).
JOB_FIELDS = tuple(
    f.name for f in fields(GenerateArgs) if f.name not in ("out", "device", "save_memory", "load_memory")
)
#: Job fields that name files or folders (resolved against the job file's folder when relative).
PATH_FIELDS = ("image", "depth", "memory_weights")
#: Model-folder fields: a folder relative to the job file when one is there, else as given (a Hub
#: repo id in the local cache, ``generate --model REPO_ID``, or a path the worker checks).
MODEL_FIELDS = ("model", "depth_model", "sky_model")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class BatchJob:
    """One validated line of a job file.

    Attributes:
        id: the job's name (its output folder and file names).
        line: 1-based line number in the job file.
        settings: the ``GenerateArgs`` fields the line sets (paths made absolute).
        eval: also score the run (``OUT.metrics.json``).
    """

    id: str
    line: int
    settings: dict = field(default_factory=dict)
    eval: bool = False

    def outputs(self, out_dir: str | Path) -> list[Path]:
        """The files this job writes in ``out_dir``: ``ID/ID.mp4``, ``.json``, ``.cameras.txt`` (+ metrics)."""
        video = Path(out_dir) / self.id / f"{self.id}.mp4"
        names = [video, video.with_suffix(".json"), video.with_suffix(".cameras.txt")]
        return names + ([video.with_suffix(".metrics.json")] if self.eval else [])

    def is_complete(self, out_dir: str | Path) -> bool:
        """Whether every output of the job exists (an output set renames its files only all together)."""
        return all(path.is_file() for path in self.outputs(out_dir))

    def generate_args(self, out_dir: str | Path) -> GenerateArgs:
        """The ``generate`` arguments of this job writing into ``out_dir``."""
        return GenerateArgs(out=str(self.outputs(out_dir)[0]), **self.settings)

    def stack_key(self) -> tuple:
        """What decides the generation stack a worker needs (jobs are sorted by it to save reloads)."""
        s = self.settings
        return (s.get("backend", ""), s.get("model") or "", s.get("memory_weights") or "", s.get("offload", ""))


_TYPES = typing.get_type_hints(GenerateArgs)


def _type_ok(value, hint) -> bool:
    """Whether a JSON value fits a ``GenerateArgs`` annotation (``int`` takes no bool; ``float`` takes int)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return True
        if option is bool and isinstance(value, bool):
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if option is str and isinstance(value, str):
            return True
    return False


def _type_name(hint) -> str:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return " or ".join("null" if o is type(None) else o.__name__ for o in options)


def parse_job(text: str, line: int, base: Path) -> BatchJob:
    """One line of a job file as a :class:`BatchJob`; ``base`` is the folder relative paths start from.

    Raises:
        ValueError: ``"line N: <reason>"`` (not JSON, not an object, unknown key, wrong type, bad id).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {line}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"line {line}: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(JOB_FIELDS) - {"id", "eval"})
    if unknown:
        raise ValueError(f"line {line}: unknown key(s) {', '.join(unknown)} (known: id, eval, {', '.join(JOB_FIELDS)})")
    job_id = data.pop("id", None)
    if not isinstance(job_id, str) or not ID_PATTERN.fullmatch(job_id):
        raise ValueError(
            f"line {line}: id: expected a string of letters, digits, '.', '_', '-' (at most 100), got {job_id!r}"
        )
    evaluate = data.pop("eval", False)
    if not isinstance(evaluate, bool):
        raise ValueError(f"line {line}: eval: expected true or false, got {evaluate!r}")
    if isinstance(data.get("trajectory"), dict):
        data["trajectory"] = _builder_spec(data["trajectory"], line)
    for key, value in data.items():
        if not _type_ok(value, _TYPES[key]):
            raise ValueError(f"line {line}: {key}: expected {_type_name(_TYPES[key])}, got {json.dumps(value)}")
    for key in PATH_FIELDS:
        if data.get(key):
            data[key] = str(base / data[key])
    for key in MODEL_FIELDS:
        if data.get(key) and (base / data[key]).exists():
            data[key] = str(base / data[key])
    if "trajectory" in data:
        try:
            builder = parse_builder(data["trajectory"])
        except ValueError as exc:
            raise ValueError(f"line {line}: trajectory: {exc}") from None
        if builder is None:
            data["trajectory"] = str(base / data["trajectory"])
    return BatchJob(job_id, line, data, evaluate)


def _builder_spec(trajectory: dict, line: int) -> str:
    """``{"builder": NAME, key: number, ...}`` as the ``generate`` spec ``NAME:key=number,...``."""
    params = dict(trajectory)
    name = params.pop("builder", None)
    if name not in BUILDER_PARAMS:
        raise ValueError(f"line {line}: trajectory: builder must be one of {', '.join(BUILDER_PARAMS)}, got {name!r}")
    for key, value in params.items():
        if key not in BUILDER_PARAMS[name] or isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(
                f"line {line}: trajectory: {name} takes numbers {', '.join(BUILDER_PARAMS[name])}, got {key}={value!r}"
            )
    return ":".join([name, ",".join(f"{k}={v}" for k, v in params.items())]).rstrip(":")


def read_jobs(path: str | Path) -> list[BatchJob]:
    """Every job of a job file (blank lines skipped), all checked before any runs.

    Raises:
        ValueError: ``"<file>: line N: <reason>"`` for the first bad line, a repeated id, or no jobs.
        OSError: the file cannot be read.
    """
    path = Path(path)
    jobs: dict[str, BatchJob] = {}
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                job = parse_job(text, number, path.parent.resolve())
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
            if job.id in jobs:
                raise ValueError(f"{path}: line {number}: id {job.id!r} repeats line {jobs[job.id].line}")
            jobs[job.id] = job
    if not jobs:
        raise ValueError(f"{path}: holds no jobs")
    return list(jobs.values())
