"""Evaluation harness: a dataset listing -> renders -> the paper's metrics (section 5.3) with Internal
Difference under h-flip (Table 2) -> per-sample and aggregate tables (CSV + Markdown).

* Listing: CSV with a header (``image,audio[,reference][,id]``) or JSON (a list of objects with those keys).
  Relative paths are resolved against the listing's folder.
* Resumable: each finished sample leaves ``samples/<id>.json`` (+ ``<id>.npz`` Inception features); a rerun
  skips it.
* Robust to bad rows: a sample that cannot be evaluated (a photo without a face, a clip too short to score, a
  missing file) is recorded in ``samples/<id>.failed.json`` with its reason, shown as a ``failed`` row of the
  per-sample table and in ``failures.{csv,md}``, and the run goes on; a rerun tries failed samples again.
* NaN values are explained: each per-sample row has a ``notes`` column saying why a metric could not be
  computed, and the Markdown tables end with a legend.
* Shardable: sample ``i`` belongs to rank ``i % world_size`` (``RANK`` / ``WORLD_SIZE`` from torchrun); rank 0
  waits for every sample file and merges. No process group is needed: ranks meet through the output folder.

Metrics per rendered video: CPBD, dlib-ID (always so labelled) and CSIM when ArcFace weights are present,
LSE-D/LSE-C when SyncNet weights are present, the lip-sync proxy (r at lag 0, best lag), and FID per
condition over the pooled frames against the reference frames (the reference video when listed, else the
source photo; the original, unflipped frames for both conditions, as the paper compares against the
original frames). FID uses few frames here, so it is noisy; it is not comparable with published tables.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerffs.audio import load_audio
from nerffs.errors import InputError, NoFaceError
from nerffs.metrics.cpbd import sample_indices, video_cpbd
from nerffs.metrics.fid import fid_from_features, inception_features, load_inception
from nerffs.metrics.identity import ArcFaceCSIM, DlibIdentity, arcface_or_none
from nerffs.metrics.internal_difference import CONDITIONS, deltas, flip_photo
from nerffs.metrics.lipsync_proxy import lipsync_proxy
from nerffs.metrics.syncnet import face_crops, lse_scores, syncnet_or_none
from nerffs.pipeline import TalkingHeadPipeline
from nerffs.preprocess.image import load_image
from nerffs.render.video import read_video
from nerffs.utils.cli import error_line
from nerffs.utils.device import process_device
from nerffs.utils.io import atomic_path, atomic_write_text
from nerffs.utils.logging import progress
from nerffs.utils.shard import shard_info, wait_for_shards

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One listing row: id, photo, speech and an optional reference (ground-truth) video."""

    id: str
    image: Path
    audio: Path
    reference: Path | None = None


@dataclass
class EvalConfig:
    """Settings of one evaluation run."""

    out_dir: Path
    """Output folder: videos/, samples/ and the tables."""
    weights: str = "smoke"
    """``TalkingHeadPipeline.from_pretrained`` source ("smoke", "auto" or a weights directory)."""
    seed: int = 0
    max_frames: int = 8
    """Frames per video (evenly spaced) scored by CPBD, identity and FID."""
    flip: bool = True
    """Also render the h-flipped photo (Internal Difference)."""
    max_lag: int = 10
    """Lip-sync proxy: lags searched, in frames."""
    pipeline_options: dict = field(default_factory=dict)
    """Flat ``PipelineConfig`` overrides passed to every render."""
    arcface_path: Path | None = None
    syncnet_path: Path | None = None
    device: str = "cpu"
    """'cpu', 'cuda' (under torchrun: each process its ``cuda:$LOCAL_RANK``) or 'cuda:N'; checked first."""
    rank: int | None = None
    """Shard index; None reads ``$RANK`` (0 when unset)."""
    world_size: int | None = None
    """Number of shards; None reads ``$WORLD_SIZE`` (1 when unset)."""
    merge_timeout_s: float = 24 * 3600.0
    show_progress: bool = True


@dataclass
class EvalResult:
    """Rows of the per-sample and aggregate tables, and the files written (empty on ranks other than 0)."""

    per_sample: list[dict]
    aggregate: list[dict]
    files: list[Path]
    evaluated: list[str]
    skipped: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    """Sample id -> why it could not be evaluated (every failed sample of the listing, on rank 0)."""


NAN_REASONS = {
    "cpbd": "CPBD undefined: no sharp edges in the scored frames",
    "dlib_id": "dlib-ID: no face found in the scored frames",
    "csim": "CSIM: no face found in the scored frames",
    "proxy": "lip-sync proxy: no mouth found in enough frames (or no speech energy)",
    "lse": "LSE: SyncNet found no face crops in the video",
    "fid": "FID needs at least 2 frames on each side",
}
"""Metric prefix -> why it is NaN, when nothing more specific is known."""

LEGEND = {
    "per_sample": [
        "cpbd: sharpness (CPBD, higher = sharper); dlib_id_cos / dlib_id_l2: identity similarity to the photo with "
        "dlib's face descriptor (a stand-in, not CSIM); csim: ArcFace CSIM (only with its weights); proxy_r0 / "
        "proxy_best_r / proxy_best_lag: correlation of mouth opening and speech energy at lag 0 / the best lag "
        "(a lip-sync proxy, not LSE); lse_d / lse_c: SyncNet LSE (only with its weights).",
        "condition: input (the photo), flipped (its mirror image), delta (input - flipped, Internal Difference), "
        "failed (the sample could not be evaluated; the notes column says why, failures.md lists them all).",
        "NaN: the metric could not be computed for that video; the notes column says why. A delta is NaN where "
        "either condition is.",
    ],
    "aggregate": [
        "Means over the evaluated samples, ignoring NaN values (NaN only when no sample had a value); n: samples "
        "evaluated (failed samples are left out: failures.md). fid: FID per condition over the pooled frames "
        "against the reference frames (few frames: noisy, not comparable with published tables).",
        "delta: input - flipped (Internal Difference).",
    ],
}
"""Lines printed under each Markdown table."""


# ---- listing ---------------------------------------------------------------------------------------------
def read_listing(path: str | os.PathLike) -> list[Sample]:
    """Parse a CSV or JSON listing into samples (ids default to ``<index>_<image stem>``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"listing not found: {path}")
    text = path.read_text(encoding="utf-8")
    rows = json.loads(text) if path.suffix.lower() == ".json" else list(csv.DictReader(io.StringIO(text)))
    if not isinstance(rows, list):
        raise InputError(f"{path}: a JSON listing must be a list of objects with image/audio keys")
    samples, seen = [], set()
    for i, row in enumerate(rows):
        if not row.get("image") or not row.get("audio"):
            raise InputError(f"{path}: row {i} needs 'image' and 'audio' (got {sorted(row)})")
        resolve = lambda p: (path.parent / p).resolve() if p else None  # noqa: E731
        sid = str(row.get("id") or f"{i:04d}_{Path(row['image']).stem}")
        if sid in seen:
            raise InputError(f"{path}: duplicate sample id {sid!r}")
        seen.add(sid)
        samples.append(Sample(sid, resolve(row["image"]), resolve(row["audio"]), resolve(row.get("reference"))))
    return samples


# ---- per-sample evaluation ---------------------------------------------------------------------------
class Evaluator:
    """Holds the pipeline and the metric models (loaded once); ``evaluate(sample)`` writes its result file."""

    def __init__(self, cfg: EvalConfig, pipeline=None):
        self.cfg = cfg
        self.pipe = pipeline or TalkingHeadPipeline.from_pretrained(cfg.weights, device=cfg.device, seed=cfg.seed)
        self.detector = self.pipe.detector
        self.dlib_id = DlibIdentity(self.detector)
        arcface = arcface_or_none(cfg.arcface_path)
        self.csim = ArcFaceCSIM(arcface, self.detector) if arcface is not None else None
        self.syncnet = syncnet_or_none(cfg.syncnet_path)
        self.inception = load_inception(device=cfg.device)

    def sample_dir(self) -> Path:
        return Path(self.cfg.out_dir) / "samples"

    def evaluate(self, sample: Sample) -> dict:
        """Render each condition, score it, save ``samples/<id>.json`` and ``.npz``; returns the record."""
        photo = load_image(sample.image)
        wave = load_audio(sample.audio)
        ref = self._reference_frames(sample, photo)
        feats = {"reference": inception_features(self.inception, ref)}
        metrics, notes = {}, {}
        for cond in CONDITIONS if self.cfg.flip else CONDITIONS[:1]:
            src = photo if cond == "input" else flip_photo(photo)
            video = Path(self.cfg.out_dir) / "videos" / f"{sample.id}_{cond}.mp4"
            frames, fps = self._render(src, sample.audio, video)
            picked = frames[_spread(len(frames), self.cfg.max_frames)]
            notes[cond] = {}
            metrics[cond] = self._score(src, frames, picked, wave, fps, notes[cond])
            feats[cond] = inception_features(self.inception, picked)
        record = {"id": sample.id, "image": str(sample.image), "audio": str(sample.audio),
                  "reference": str(sample.reference) if sample.reference else None, "metrics": metrics,
                  "delta": deltas(metrics["input"], metrics["flipped"]) if "flipped" in metrics else {},
                  "notes": notes}
        out = self.sample_dir()
        with atomic_path(out / f"{sample.id}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **feats)
        atomic_write_text(out / f"{sample.id}.json", json.dumps(record, indent=1, default=_json_default))
        return record

    def _render(self, photo: np.ndarray, audio: Path, video: Path) -> tuple[np.ndarray, float]:
        self.pipe(photo, audio, video, seed=self.cfg.seed, show_progress=False, **self.cfg.pipeline_options)
        return read_video(video)

    def _reference_frames(self, sample: Sample, photo: np.ndarray) -> np.ndarray:
        if sample.reference is None:
            return photo[None]

        frames, _ = read_video(sample.reference)
        return frames[_spread(len(frames), self.cfg.max_frames)]

    def _score(self, source: np.ndarray, frames: np.ndarray, picked: np.ndarray, wave: np.ndarray,
               fps: float, notes: dict[str, str] | None = None) -> dict[str, float]:
        """Every per-video metric; metrics that cannot run (no face, no weights) are NaN, and ``notes`` gets
        the reason for each NaN (metric -> reason)."""
        notes = {} if notes is None else notes
        m: dict[str, float] = {"cpbd": video_cpbd(picked, len(picked))}
        m.update(_identity(self.dlib_id, "dlib_id", source, picked, notes))
        if self.csim is not None:
            m["csim"] = _identity(self.csim, "csim", source, picked, notes)["csim_cos"]
        sync = lipsync_proxy(frames, wave, 16000, fps, self.detector, self.cfg.max_lag)
        lag = float(sync.best_lag) if math.isfinite(sync.best_r) else math.nan  # no face in any frame: no lag
        m.update(proxy_r0=sync.r_at_0, proxy_best_r=sync.best_r, proxy_best_lag=lag)
        m.update(self._lse(frames, wave))
        for key, value in m.items():
            if isinstance(value, float) and math.isnan(value) and key not in notes:
                notes[key] = next((r for p, r in NAN_REASONS.items() if key.startswith(p)), "not computable")
        return m

    def _lse(self, frames: np.ndarray, wave: np.ndarray) -> dict[str, float]:
        if self.syncnet is None:
            return {}

        faces = face_crops(frames, self.detector)
        if faces is None:
            return {"lse_d": float("nan"), "lse_c": float("nan")}
        s = lse_scores(self.syncnet, faces, wave, 16000)
        return {"lse_d": s.lse_d, "lse_c": s.lse_c}


def _identity(metric, name: str, source: np.ndarray, frames: np.ndarray,
              notes: dict[str, str] | None = None) -> dict[str, float]:
    try:
        s = metric.score(source, frames)
    except NoFaceError:  # no face in the source photo itself
        if notes is not None:
            notes.update({f"{name}_cos": "no face found in the source photo", f"{name}_l2": "no face found in "
                          "the source photo"})
        return {f"{name}_cos": float("nan"), f"{name}_l2": float("nan")}
    return {f"{name}_cos": s.cosine, f"{name}_l2": s.l2}


def _spread(num: int, count: int) -> np.ndarray:
    return sample_indices(num, count)


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    raise TypeError(type(obj))


# ---- orchestration ---------------------------------------------------------------------------------------
def is_done(out_dir: Path, sample: Sample) -> bool:
    """A sample is finished when its JSON parses and its features file exists."""
    path = Path(out_dir) / "samples" / f"{sample.id}.json"
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return path.with_suffix(".npz").is_file()


def failure_path(out_dir: Path, sample: Sample) -> Path:
    return Path(out_dir) / "samples" / f"{sample.id}.failed.json"


def read_failure(out_dir: Path, sample: Sample) -> str | None:
    """Why ``sample`` failed on its last attempt, or None (never tried, or it succeeded since)."""
    if is_done(out_dir, sample):
        return None
    try:
        return str(json.loads(failure_path(out_dir, sample).read_text(encoding="utf-8"))["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_failure(out_dir: Path, sample: Sample, exc: BaseException) -> str:
    """Write ``samples/<id>.failed.json`` (atomically) and return the one-line reason."""
    reason = error_line(exc).removeprefix("error: ")
    data = {"id": sample.id, "image": str(sample.image), "audio": str(sample.audio), "reason": reason}
    atomic_write_text(failure_path(out_dir, sample), json.dumps(data, indent=1) + "\n")
    return reason


def _evaluate_all(evaluator: "Evaluator", todo: list[Sample], cfg: EvalConfig, rank: int) -> None:
    """Evaluate each sample; a sample that fails is recorded with its reason and the next one runs."""
    for sample in progress(todo, desc=f"evaluate (rank {rank})", enabled=cfg.show_progress):
        try:
            evaluator.evaluate(sample)
        except Exception as exc:  # noqa: BLE001 - one bad row must not stop the dataset (Ctrl-C still does)
            reason = record_failure(cfg.out_dir, sample, exc)
            log.warning("sample %s (image %s, audio %s) failed: %s; going on with the others", sample.id,
                        sample.image.name, sample.audio.name, reason)
        else:
            failure_path(cfg.out_dir, sample).unlink(missing_ok=True)


def run_evaluation(listing: str | os.PathLike | list[Sample], cfg: EvalConfig, pipeline=None) -> EvalResult:
    """Evaluate this rank's shard of the listing (skipping finished samples, retrying failed ones); rank 0
    then merges all."""
    cfg = dataclasses.replace(cfg, device=str(process_device(cfg.device)))  # before anything is read or built
    samples = read_listing(listing) if not isinstance(listing, list) else listing
    rank, world = shard_info(cfg.rank, cfg.world_size)
    mine = [s for i, s in enumerate(samples) if i % world == rank]
    todo = [s for s in mine if not is_done(cfg.out_dir, s)]
    skipped = [s.id for s in mine if s not in todo]
    if skipped:
        log.info("rank %d: %d finished sample(s) skipped", rank, len(skipped))
    retried = [s.id for s in todo if failure_path(cfg.out_dir, s).is_file()]
    if retried:
        log.info("rank %d: trying %d failed sample(s) again: %s", rank, len(retried), ", ".join(retried))
    if todo:
        _evaluate_all(Evaluator(cfg, pipeline), todo, cfg, rank)
    if rank != 0:
        return EvalResult([], [], [], [s.id for s in todo if is_done(cfg.out_dir, s)], skipped)
    _wait_for(cfg, samples)
    failed = {s.id: r for s in samples if (r := read_failure(cfg.out_dir, s)) is not None}
    per_sample, aggregate, files = merge(cfg.out_dir, samples)
    if failed:
        log.warning("%d of %d sample(s) could not be evaluated (see %s): %s", len(failed), len(samples),
                    Path(cfg.out_dir) / "failures.md", "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return EvalResult(per_sample, aggregate, files, [s.id for s in todo if is_done(cfg.out_dir, s)], skipped,
                      failed)


def _wait_for(cfg: EvalConfig, samples: list[Sample]) -> None:
    missing = wait_for_shards(
        lambda: [s.id for s in samples if not is_done(cfg.out_dir, s) and read_failure(cfg.out_dir, s) is None],
        cfg.merge_timeout_s, poll_s=2.0)
    if missing:
        raise InputError(f"merge: {len(missing)} sample(s) never finished (e.g. {missing[0]}); rerun the "
                         "evaluation to resume them")


def merge(out_dir: str | os.PathLike, samples: list[Sample]) -> tuple[list[dict], list[dict], list[Path]]:
    """Per-sample rows (one per sample and condition, a ``failed`` row per failed sample) and aggregate rows
    (mean per condition over the evaluated samples, FID over the pooled features, and the Internal Difference
    row ``delta = input - flipped``); writes CSV + Markdown (with a legend) and the failures summary."""
    out_dir = Path(out_dir)
    done = [s for s in samples if is_done(out_dir, s)]
    records = [json.loads((out_dir / "samples" / f"{s.id}.json").read_text(encoding="utf-8")) for s in done]
    feats = [dict(np.load(out_dir / "samples" / f"{s.id}.npz")) for s in done]
    failures = [{"id": s.id, "image": str(s.image), "audio": str(s.audio), "reason": r} for s in samples
                if (r := read_failure(out_dir, s)) is not None]
    conds = [c for c in CONDITIONS if records and all(c in r["metrics"] for r in records)]
    per_sample = [{"id": r["id"], "condition": c, **r["metrics"][c], "notes": _notes(r.get("notes", {}).get(c))}
                  for r in records for c in conds]
    per_sample += [{"id": r["id"], "condition": "delta", **r["delta"], "notes": _delta_notes(r["delta"])}
                   for r in records if r["delta"]]
    per_sample += [{"id": f["id"], "condition": "failed", "notes": f["reason"]} for f in failures]
    aggregate = []
    for c in conds:
        keys = sorted({k for r in records for k in r["metrics"][c]})
        row = {"condition": c, "n": len(records)}
        row.update({k: _nanmean([r["metrics"][c].get(k, math.nan) for r in records]) for k in keys})
        generated, reference = np.concatenate([f[c] for f in feats]), np.concatenate([f["reference"] for f in feats])
        row["fid"] = fid_from_features(generated, reference) if min(len(generated), len(reference)) >= 2 else math.nan
        aggregate.append(row)
    if len(aggregate) == 2:
        delta = deltas(aggregate[0], aggregate[1])
        delta.pop("n", None)
        aggregate.append({"condition": "delta", "n": len(records), **delta})
    files = []
    for name, rows in (("per_sample", per_sample), ("aggregate", aggregate)):
        files += [out_dir / f"{name}.csv", out_dir / f"{name}.md"]
        atomic_write_text(files[-2], to_csv(rows))
        atomic_write_text(files[-1], to_markdown(rows, LEGEND[name]))
    files += write_failures(out_dir, failures)
    return per_sample, aggregate, files


def write_failures(out_dir: Path, failures: list[dict]) -> list[Path]:
    """``failures.{csv,md}``: every sample that could not be evaluated and why (removed when none failed)."""
    paths = [out_dir / "failures.csv", out_dir / "failures.md"]
    if not failures:
        for p in paths:
            p.unlink(missing_ok=True)
        return []
    atomic_write_text(paths[0], to_csv(failures))
    atomic_write_text(paths[1], f"# {len(failures)} sample(s) could not be evaluated\n\n" + to_markdown(failures, [
        "Each row is left out of the tables; fix its inputs and rerun the evaluation to try it again (finished "
        "samples are skipped)."]))
    return paths


def _notes(notes: dict[str, str] | None) -> str:
    """``a, b: reason; c: other reason`` (metrics grouped by reason)."""
    grouped: dict[str, list[str]] = {}
    for key, reason in (notes or {}).items():
        grouped.setdefault(reason, []).append(key)
    return "; ".join(f"{', '.join(keys)}: {reason}" for reason, keys in grouped.items())


def _delta_notes(delta: dict) -> str:
    nan = [k for k, v in delta.items() if isinstance(v, float) and math.isnan(v)]
    return f"{', '.join(nan)}: NaN in a condition" if nan else ""


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan


def _columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    return cols


def to_csv(rows: list[dict]) -> str:
    """Rows -> CSV text (union of keys, first-seen order)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: list[dict], legend: list[str] | None = None) -> str:
    """Rows -> a Markdown table; floats with 4 decimals; then the ``legend`` lines. Metric names carry their
    labels (dlib_id_* is dlib-ID, not CSIM; proxy_* is the lip-sync proxy, not LSE)."""
    cols = _columns(rows)
    fmt = lambda v: (f"{v:.4f}" if isinstance(v, float) else str(v)).replace("|", "/")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    if legend:
        lines += [""] + [f"- {line}" for line in legend]
    return "\n".join(lines) + "\n"
