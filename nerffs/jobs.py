"""Batch jobs: many (photo, speech) pairs rendered by one pipeline, resumable, sharded over processes.

A jobs file is a CSV with the columns ``image``, ``audio`` and ``output`` (paths relative to the CSV's folder
unless absolute), optionally ``transcript`` and ``seed``, and any pipeline option as a column (its name as in
``PipelineConfig``, e.g. ``camera``, ``exp_scale``, ``pose``; an empty cell keeps the default).

``run_jobs``:

* rows are sharded like the evaluation harness: row ``i`` belongs to rank ``i % world_size`` (``RANK`` /
  ``WORLD_SIZE`` from ``torchrun``);
* under ``torchrun`` (``MASTER_ADDR`` set) the ranks meet over a gloo process group when they are done, so the
  summary needs no shared file system; without one (ranks started by hand) rank 0 waits for the status files;
* each row writes ``<status dir>/row-NNNNN.json`` (ok or failed, the reason, seconds) atomically when it ends;
  a failed row is logged in one line and skipped, the others go on;
* on a rerun, rows whose status says ok, whose output exists and whose settings (inputs, seed, transcript,
  options) are unchanged are skipped (resumable); a row whose settings changed is rendered again;
* rank 0 writes ``summary.csv`` and ``summary.json`` (every row, in row order) into the status folder.

Per-face work (alignment, the offline fit, the reference) is cached by the pipeline, so rows that share a
photo reuse it.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import logging
import os
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nerffs.config import PipelineConfig, get_config
from nerffs.errors import InputError
from nerffs.options import check_options
from nerffs.utils.cli import error_line
from nerffs.utils.io import atomic_write_text
from nerffs.utils.logging import progress
from nerffs.utils.shard import shard_info, wait_for_shards

log = logging.getLogger(__name__)

REQUIRED = ("image", "audio", "output")
SPECIAL = ("transcript", "seed", "id")


@dataclass
class Job:
    """One row: inputs, output, and the pipeline options given in its cells."""

    index: int
    image: Path
    audio: Path
    output: Path
    transcript: str | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobsResult:
    """What this rank did; ``summary`` is set on rank 0 (every row's status, in row order)."""

    rendered: list[int]
    skipped: list[int]
    failed: list[int]
    summary: list[dict[str, Any]] | None = None


def _option_types() -> dict[str, Any]:
    """Every flat pipeline option name -> its declared type (for parsing CSV cells)."""
    out = {}
    for group in dataclasses.fields(PipelineConfig):
        cls = typing.get_type_hints(PipelineConfig)[group.name]
        hints = typing.get_type_hints(cls)
        out.update({f.name: hints[f.name] for f in dataclasses.fields(cls)})
    return out


def _parse_cell(name: str, text: str, kind: Any, where: str) -> Any:
    base = typing.get_args(kind)[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) else kind
    try:
        if base is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if base in (int, float):
            return base(text)
        return text
    except ValueError:
        raise InputError(f"{where}: column {name!r} needs a {getattr(base, '__name__', base)}, got {text!r}") from None


def read_jobs(path: str | os.PathLike) -> list[Job]:
    """Parse a jobs CSV (see the module docstring). Raises InputError naming the row and column at fault."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"jobs file not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise InputError(f"{path}: the jobs file needs the columns {', '.join(REQUIRED)} (missing: {', '.join(missing)})")
    kinds = _option_types()
    unknown = [c for c in columns if c not in REQUIRED + SPECIAL and c not in kinds]
    if unknown:
        raise InputError(f"{path}: unknown column(s) {', '.join(unknown)}; use pipeline option names "
                         f"(e.g. camera, exp_scale, pose) or transcript / seed")
    here = lambda p: Path(p) if Path(p).is_absolute() else (path.parent / p)  # noqa: E731
    jobs, outputs = [], set()
    for i, row in enumerate(rows):
        where = f"{path.name} row {i + 2}"  # the header is line 1
        if any(not (row.get(c) or "").strip() for c in REQUIRED):
            raise InputError(f"{where}: image, audio and output must all be given")
        out = here(row["output"].strip()).resolve()
        if out in outputs:
            raise InputError(f"{where}: output {out} is written by an earlier row too")
        outputs.add(out)
        options = {c: _parse_cell(c, row[c].strip(), kinds[c], where) for c in columns
                   if c in kinds and (row.get(c) or "").strip()}
        seed = (row.get("seed") or "").strip()
        jobs.append(Job(index=i, image=here(row["image"].strip()), audio=here(row["audio"].strip()), output=out,
                        transcript=(row.get("transcript") or "").strip() or None,
                        seed=_parse_cell("seed", seed, int, where) if seed else 0, options=options))
    return jobs


def prepare_jobs(path: str | os.PathLike, defaults: dict[str, Any] | None = None) -> list[Job]:
    """``read_jobs``, then every row's options over ``defaults`` (e.g. the command line's), each row checked
    like a single call's options (``nerffs.options.check_options``). Raises InputError naming the row."""
    rows = read_jobs(path)
    for row in rows:
        row.options = {**(defaults or {}), **row.options}
        try:
            check_options(row.options, get_config("official"))
        except InputError as exc:
            raise InputError(f"{Path(path).name} row {row.index + 2}: {exc}") from None
    return rows


def _status_path(status_dir: Path, job: Job) -> Path:
    return status_dir / f"row-{job.index:05d}.json"


def _settings(job: Job) -> dict[str, Any]:
    """What a row's video depends on besides the models: a rerun re-renders a row whose settings changed."""
    return {"image": str(job.image), "audio": str(job.audio), "seed": job.seed, "transcript": job.transcript,
            "options": {k: job.options[k] for k in sorted(job.options)}}


def _finished(status_dir: Path, job: Job) -> bool:
    try:
        status = json.loads(_status_path(status_dir, job).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return status.get("ok") is True and status.get("settings") == _settings(job) and job.output.is_file()


def run_jobs(pipeline, jobs: list[Job] | str | os.PathLike, status_dir: str | os.PathLike | None = None, *,
             rank: int | None = None, world_size: int | None = None, show_progress: bool = True,
             merge_timeout_s: float = 24 * 3600.0) -> JobsResult:
    """Render this rank's rows (see the module docstring); rank 0 then writes the summary.

    Args:
        pipeline: a ``TalkingHeadPipeline``.
        jobs: the rows, or the path of a jobs CSV.
        status_dir: where row status files and the summary go; default ``<jobs file>.status`` beside the CSV
            (or ``./jobs.status`` for a list of rows).
    """
    source = None if isinstance(jobs, list) else Path(jobs)
    rows = jobs if isinstance(jobs, list) else read_jobs(jobs)
    status = Path(status_dir) if status_dir else (source.with_suffix(".status") if source else Path("jobs.status"))
    status.mkdir(parents=True, exist_ok=True)
    rank, world = shard_info(rank, world_size)
    mine = [j for j in rows if j.index % world == rank]
    result = JobsResult(rendered=[], skipped=[j.index for j in mine if _finished(status, j)], failed=[])
    if result.skipped:
        log.info("rank %d: %d finished row(s) skipped", rank, len(result.skipped))
    todo = [j for j in mine if j.index not in result.skipped]
    for job in progress(todo, desc=f"jobs (rank {rank})", total=len(todo), enabled=show_progress, unit="row"):
        _run_one(pipeline, job, status, result, rank)
    if world > 1 and _process_group_env():
        records = _gather([_read_status(status, j) for j in mine], merge_timeout_s)
        if rank == 0:
            result.summary = _write_summary(status, sorted(records, key=lambda r: r["row"]))
    elif rank == 0:
        result.summary = _merge(status, rows, merge_timeout_s)
    return result


def _process_group_env() -> bool:
    """True under torchrun (or any launcher that sets MASTER_ADDR / MASTER_PORT): ranks then meet over gloo."""
    return bool(os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT"))


def _gather(records: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """Every rank's row records, gathered over a gloo process group (no shared file system needed)."""
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    try:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, records)  # our own records, between our own processes
    finally:
        if owned:
            dist.destroy_process_group()
    return [r for part in parts for r in part]


def _run_one(pipeline, job: Job, status: Path, result: JobsResult, rank: int) -> None:
    start = time.perf_counter()
    record: dict[str, Any] = {"row": job.index, "image": str(job.image), "audio": str(job.audio),
                              "output": str(job.output), "rank": rank, "settings": _settings(job)}
    try:
        out = pipeline(job.image, job.audio, job.output, seed=job.seed, transcript=job.transcript,
                       show_progress=False, **job.options)
        record.update(ok=True, frames=out.num_frames, models=out.weights)
        result.rendered.append(job.index)
    except Exception as exc:  # noqa: BLE001 - a failed row is recorded and the batch goes on
        reason = error_line(exc).removeprefix("error: ")
        log.error("row %d (%s) failed: %s", job.index + 2, job.image.name, reason)
        record.update(ok=False, reason=reason)
        result.failed.append(job.index)
    record["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_text(_status_path(status, job), json.dumps(record, indent=1))


def _merge(status: Path, rows: list[Job], timeout_s: float) -> list[dict[str, Any]]:
    """Wait for every row's status, then write summary.csv / summary.json (atomically)."""
    missing = wait_for_shards(lambda: [j for j in rows if not _status_path(status, j).is_file()], timeout_s,
                              poll_s=1.0)
    if missing:
        raise InputError(f"{len(missing)} job row(s) never finished (e.g. row {missing[0].index + 2}); "
                         "run the jobs again to resume them")
    return _write_summary(status, [_read_status(status, j) for j in rows])


def _read_status(status: Path, job: Job) -> dict[str, Any]:
    return json.loads(_status_path(status, job).read_text(encoding="utf-8"))


def _write_summary(status: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ["row", "ok", "output", "seconds", "frames", "models", "reason", "rank", "image", "audio"]
    lines = [",".join(keys)] + [",".join(_csv_cell(r.get(k, "")) for k in keys) for r in records]
    atomic_write_text(status / "summary.csv", "\n".join(lines) + "\n")
    failed = [r for r in records if not r.get("ok")]
    atomic_write_text(status / "summary.json", json.dumps({"rows": len(records), "ok": len(records) - len(failed),
                                                          "failed": len(failed), "records": records}, indent=1))
    log.info("jobs: %d ok, %d failed; summary in %s", len(records) - len(failed), len(failed), status)
    return records


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text
