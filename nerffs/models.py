"""Construction of the model set: the official files from the weights dir, the offline demo set, or seeded
random "smoke" models.

* official: every network of the method, loaded through ``nerffs.weights``;
* offline: built per photo from models that ship inside packages (``nerffs.offline``): what ``auto`` uses
  when the official files are missing, so the main job shows the user's face without any download;
* smoke: the real architectures (tiny where the architecture allows it) with seeded random weights, for fast
  tests of the plumbing; the output is not a face.

Every output says which set made it (log, file metadata, app banner).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from nerffs import weights
from nerffs.audio.audio2exp import Audio2Exp, load_audio2exp
from nerffs.audio.audio2pose import Audio2Pose, load_audio2pose
from nerffs.errors import CheckpointError, IncompleteWeightsError, InputError, WeightsMissingError
from nerffs.lipaint.networks import TalkingModels, frozen, load_networks, seeded_networks
from nerffs.offline.models import OFFLINE, OfflineConfig, OfflineModels
from nerffs.offline.speech import SpeechMotion

log = logging.getLogger(__name__)

SMOKE = "smoke"


@dataclass
class ModelSet:
    """All networks of the pipeline plus a label saying where their weights came from.

    ``talking`` holds the loop's networks when they are the same for every photo (official, smoke). A per-photo
    source (offline) has ``talking = None`` and ``photo_models``, which builds them for each photo.
    """

    talking: TalkingModels | None
    audio2exp: torch.nn.Module
    """Audio2Exp (official, smoke) or the offline speech driver (``nerffs.offline.speech.SpeechMotion``)."""
    label: str
    """'smoke' (seeded random weights), 'offline' (built per photo) or 'official:<weights dir>'."""
    photo_models: OfflineModels | None = None
    audio2pose: Audio2Pose | None = None
    """SadTalker's Audio2Pose when its weights are loaded; without it, head motion from audio is procedural."""

    @property
    def is_smoke(self) -> bool:
        return self.label == SMOKE

    @property
    def source(self) -> str:
        """'smoke', 'offline' or 'official' (also the name of the pipeline preset that suits the set)."""
        return self.label if self.label in (SMOKE, OFFLINE) else "official"

    @property
    def weights_root(self) -> Path | None:
        """The weights directory of an official set (None for smoke and offline)."""
        return Path(self.label.partition(":")[2]) if self.source == "official" else None

    @property
    def resolution(self) -> int:
        """Side of the generated images (and of the aligned photo)."""
        if self.photo_models is not None:
            return self.photo_models.resolution
        return self.talking.generator.img_resolution

    def describe(self) -> str:
        """One line for logs, file metadata and the app banner."""
        return {SMOKE: "smoke models (seeded random weights, the output is not a face)",
                OFFLINE: "offline demo models (fitted to the photo from packaged models, not the official weights)"
                }.get(self.label, f"official weights ({self.label.partition(':')[2]})")

    def to(self, device: torch.device | str) -> "ModelSet":
        self.audio2exp.to(device)
        if self.audio2pose is not None:
            self.audio2pose.to(device)
        if self.talking is not None:
            t = self.talking
            for m in (t.generator, t.face_model, t.deep3d, t.parser, t.lipaint):
                m.to(device)
        return self


def smoke_models(seed: int = 0, resolution: int = 128, num_vertices: int = 4000) -> ModelSet:
    """Seeded random models for every component (deterministic for a given seed): the networks of
    ``nerffs.lipaint.networks.seeded_networks``, then a random Audio2Exp."""
    talking = seeded_networks(seed, resolution, num_vertices)
    log.warning("using SMOKE models: seeded random weights for every network; the output is not a face")
    return ModelSet(talking=talking, audio2exp=frozen(Audio2Exp()), label=SMOKE)


GENERATORS = {256: "stylenerf_ffhq256", 512: "stylenerf_ffhq512", 1024: "stylenerf_ffhq1024"}
"""Official StyleNeRF generator file per resolution (``--generator``)."""

ROLES = {
    "generator": "renders the face: identity, novel views and PTI inversion (the StyleNeRF prior)",
    "sadtalker": "speech -> expressions (Audio2Exp), the photo's pose and 3DMM fit (Deep3D), head motion "
                 "(Audio2Pose)",
    "bfm_front": "the BFM09 face model: the 3DMM mesh that drives the ray deformation",
    "bisenet_seg16": "face parsing: the mouth mask for blending and the pinned body and background",
    "bisenet_seg19": "face parsing: the mouth mask for blending and the pinned body and background",
    "lipaintnet": "LipaintNet: the inside of the mouth (teeth, tongue) when it opens",
}
"""What each official file does for the method (said when ``auto`` falls back because one is missing)."""


def generator_asset(choice: int | str | None = None) -> str:
    """Registry name of the official generator: None -> the default (``DEFAULT_PROVIDERS['generator']``, the
    same file ``download_weights`` fetches and ``--list`` marks), 256 / 512 / 1024 (or '512') -> that
    resolution's file, or a registry name.

    Raises:
        InputError: anything else.
    """
    if choice is None:
        return weights.DEFAULT_PROVIDERS["generator"]
    text = str(choice).strip().lower().removesuffix("px")
    if text.isdigit() and int(text) in GENERATORS:
        return GENERATORS[int(text)]
    if text in GENERATORS.values():
        return text
    raise InputError(f"unknown generator {choice!r}; choose 256, 512 or 1024 (the official StyleNeRF FFHQ files)")


def official_names(generator: int | str | None = None, parsing: str = "bisenet_seg16") -> list[str]:
    """The registry names of every file the official set needs (generator first)."""
    return [generator_asset(generator), "sadtalker", "bfm_front", parsing, "lipaintnet"]


def missing_table(err: IncompleteWeightsError) -> str:
    """The lines of the fallback warning: each missing file, its name and what it would have done."""
    role = lambda n: ROLES["generator"] if n.startswith("stylenerf_") else ROLES.get(n, n)  # noqa: E731
    return "\n".join(f"  - {weights.asset_path(n, err.root)} ({n}): {role(n)}" for n in err.missing)


def official_models(root: str | os.PathLike | None = None, generator: int | str | None = None,
                    parsing: str = "bisenet_seg16") -> ModelSet:
    """Load every official file through the weights registry.

    Args:
        root: weights directory (default ``$NERFFS_WEIGHTS`` or ``~/.cache/nerffs/weights``).
        generator: the StyleNeRF generator: None (the default, ``stylenerf_ffhq512``), 256, 512, 1024 or a
            registry name.
        parsing: the BiSeNet file (16-class ``bisenet_seg16``, NFS's, or ``bisenet_seg19``).

    Raises:
        WeightsMissingError: ``root`` is not a directory.
        IncompleteWeightsError: files are missing: one line naming every missing file and the command that
            fetches them into ``root``.
        CheckpointError (and the generator's checkpoint errors): a file is unreadable; the line names it.
    """
    gen = generator_asset(generator)
    names = official_names(gen, parsing)
    base = weights.weights_dir(root)
    if root is not None and not base.is_dir():
        raise WeightsMissingError(f"weights directory {base} does not exist; give a directory holding the official "
                                  f"files (fetch them with `{weights.fetch_command(names, root)}`), or one of the "
                                  "model sets 'auto', 'offline', 'smoke'")
    missing = weights.missing(names, root)
    if missing:
        files = ", ".join(f"{weights.asset_path(n, root)} ({n})" for n in missing)
        raise IncompleteWeightsError(
            f"official weights incomplete in {base}: missing {files}; fetch them with "
            f"`{weights.fetch_command(missing, root)}` (files without a direct download print how to get them by "
            "hand), or use the offline demo models (model set 'offline')", missing, root, gen)
    sadtalker = weights.resolve("sadtalker", root)
    return ModelSet(talking=load_networks(root, gen, parsing), audio2exp=frozen(load_audio2exp(sadtalker)),
                    label=f"official:{Path(weights.weights_dir(root))}", audio2pose=_optional_audio2pose(sadtalker))


def auto_models(generator: int | str | None = None) -> ModelSet:
    """``auto``: the official set from the default weights directory when every file is there, else the offline
    demo set, with one WARNING that lists each missing file, what it does for the method, and the command
    that fetches them."""
    try:
        return official_models(None, generator)
    except IncompleteWeightsError as exc:
        log.warning("official weights incomplete in %s (the official set needs all %d files; %d missing); using "
                    "the OFFLINE demo models instead. Missing, and what each one does:\n%s\nFetch them with "
                    "`%s` (files without a direct download print how to get them); `python -m "
                    "scripts.download_weights --check` shows what is present", weights.weights_dir(),
                    len(official_names(exc.generator)), len(exc.missing), missing_table(exc),
                    weights.fetch_command(exc.missing))
    except WeightsMissingError as exc:
        log.warning("%s; using the OFFLINE demo models instead", exc)
    return offline_models()


def _optional_audio2pose(path: Path) -> Audio2Pose | None:
    """Audio2Pose from the SadTalker bundle when it holds the ``audio2pose.`` weights, else None (logged)."""
    try:
        return frozen(load_audio2pose(path))
    except CheckpointError as exc:
        log.warning("no Audio2Pose weights (%s); head motion from audio will be procedural", exc)
        return None


def offline_models(cfg: OfflineConfig | None = None) -> ModelSet:
    """The offline demo set: no weights to download; each photo is fitted on first use (nerffs.offline)."""
    log.info("using OFFLINE demo models: a radiance field fitted to each photo, phone-driven mouth motion "
             "(mediapipe, pocketsphinx, dlib; no official weights)")
    return ModelSet(talking=None, audio2exp=SpeechMotion(), label=OFFLINE, photo_models=OfflineModels(cfg))
