"""Which face of a photo to animate: ranking the detections, choosing one, saying so, and drawing the choice.

Faces are numbered in rank order (face 0 is the default), the same order ``LandmarkDetector.detect_all``
returns, the CLI's ``--face-index`` and the app's face picker use:

1. confident detections (score >= the detector's ``confident_score``) before doubtful ones (false positives
   such as the mission patch on the scikit-image astronaut photo score far lower than faces);
2. within each group, by ``size + 0.3 * frontality``: ``size`` is sqrt(box area / the group's largest area),
   so a face much larger wins, and among faces of about the same size the most frontal one does;
   ``frontality`` (1 frontal .. 0 profile) is how far the nose tip sits from the middle of the eyes;
3. left to right.

Partly transparent photos (RGBA) are detected twice: on the photo composited over white (what is animated)
and on its colour channels alone, where a face that compositing washed out is still visible; a face found
only there counts too (``detect_faces``).

``choose_face`` logs a WARNING when the chosen face is a doubtful detection or when several faces were found
and none was asked for (naming each face's position and how to pick another), and an INFO line otherwise.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from nerffs.errors import InputError, NoFaceError
from nerffs.preprocess.landmarks import FaceLandmarks, LandmarkDetector, order_faces

log = logging.getLogger(__name__)

MIN_ALPHA = 0.05
"""Faces found on the colour channels of a transparent photo count only where it is at least this opaque."""
CHOOSE_HINT = "face_index=N (CLI --face-index N; app: the face number in the preview)"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect_faces(detector: LandmarkDetector, rgb: np.ndarray, straight: np.ndarray | None = None,
                 alpha: np.ndarray | None = None) -> list[FaceLandmarks]:
    """Every face of a photo in rank order.

    Args:
        detector: the landmark detector.
        rgb: [H, W, 3] uint8, the photo as animated (composited over white when it had transparency).
        straight: [H, W, 3] uint8 colour channels before compositing (None for an opaque photo).
        alpha: [H, W] uint8 opacity (with ``straight``).

    Returns:
        faces ranked as the module docstring says (face i = ``face_index`` i).
    """
    faces = detector.detect_all(rgb)
    if straight is not None and alpha is not None:
        for face in detector.detect_all(straight):
            x0, y0, x1, y1 = (int(round(v)) for v in face.box)
            region = alpha[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
            if region.size == 0 or float(region.mean()) / 255.0 < MIN_ALPHA:
                continue  # a "face" in fully transparent pixels is not part of the picture
            same = [i for i, f in enumerate(faces) if _iou(f.box, face.box) > 0.5]
            if not same:
                faces.append(face)
            elif face.score > faces[same[0]].score:  # the washed-out composite gave a weaker detection
                faces[same[0]] = face
    return order_faces(faces, detector.confident_score)


@dataclass(frozen=True)
class FaceChoice:
    """The ranked faces of a photo and the one chosen."""

    faces: list[FaceLandmarks]
    index: int
    confident_score: float

    @property
    def face(self) -> FaceLandmarks:
        return self.faces[self.index]

    @property
    def confident(self) -> list[bool]:
        return [f.score >= self.confident_score for f in self.faces]


def choose_face(faces: list[FaceLandmarks], confident_score: float, face_index: int | None = None,
                no_face: str = "no face found; use a photo with a clearly visible, roughly frontal face"
                ) -> FaceChoice:
    """Pick face ``face_index`` (None: face 0) from ranked ``faces`` and log the choice.

    Args:
        faces: ranked detections (``detect_faces``).
        confident_score: the detector's threshold between confident and doubtful detections.
        face_index: the face asked for, or None for face 0.
        no_face: the message of the error raised when ``faces`` is empty.

    Raises:
        NoFaceError: no face at all.
        InputError: ``face_index`` out of range (the line says how many faces there are).
    """
    if not faces:
        raise NoFaceError(no_face)
    index = 0 if face_index is None else int(face_index)
    if not 0 <= index < len(faces):
        raise InputError(f"face index {face_index} is out of range: the photo has {len(faces)} face(s), numbered "
                         f"0 to {len(faces) - 1} ({describe_faces(faces, confident_score)})")
    choice = FaceChoice(faces, index, confident_score)
    _log_choice(choice, face_index is None)
    return choice


def describe_faces(faces: list[FaceLandmarks], confident_score: float, chosen: int | None = None) -> str:
    """``0 at (x, y) 112 px, 1 at ... (doubtful)``: each face's number, centre and width, for log lines."""
    parts = []
    for i, f in enumerate(faces):
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        notes = [n for n, on in (("chosen", i == chosen), ("doubtful", f.score < confident_score)) if on]
        parts.append(f"{i} at ({cx:.0f}, {cy:.0f}) {f.box[2] - f.box[0]:.0f} px" + (f" [{', '.join(notes)}]"
                                                                                     if notes else ""))
    return "; ".join(parts)


def _log_choice(choice: FaceChoice, by_default: bool) -> None:
    faces, i, face = choice.faces, choice.index, choice.face
    confident = sum(choice.confident)
    listing = describe_faces(faces, choice.confident_score, i)
    if face.score < choice.confident_score:
        log.warning("the face animated (face %d, detector score %.2f < %.2f) is a doubtful detection and may "
                       "not be a face; check the aligned preview, choose another with %s, or use a clearer photo "
                       "(faces: %s)", i, face.score, choice.confident_score, CHOOSE_HINT, listing)
    elif by_default and confident > 1:
        log.warning("%d faces found; animating face 0 (the most confident, large and frontal); choose another "
                       "with %s (faces: %s)", confident, CHOOSE_HINT, listing)
    elif len(faces) > 1:
        log.info("animating face %d of %d detections (faces: %s)", i, len(faces), listing)


def face_overlay(image: np.ndarray, faces: list[FaceLandmarks], confident_score: float,
                 chosen: int | None = 0) -> np.ndarray:
    """A copy of ``image`` with every face's box and number drawn (the chosen one in green, doubtful
    detections dashed in orange): the app's face picker. uint8 [H, W, 3] -> uint8 [H, W, 3]."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    size = max(14, round(max(img.size) / 30))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        font = ImageFont.load_default()
    for i, f in enumerate(faces):
        colour = (0, 220, 90) if i == chosen else ((255, 150, 0) if f.score < confident_score else (80, 160, 255))
        x0, y0, x1, y1 = (float(v) for v in f.box)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        label = f"{i}" + ("?" if f.score < confident_score else "")
        box = draw.textbbox((0, 0), label, font=font)
        tx, ty = x0, max(0.0, y0 - (box[3] - box[1]) - 2 * width)
        draw.rectangle((tx, ty, tx + box[2] + 2 * width, ty + box[3] + 2 * width), fill=colour)
        draw.text((tx + width, ty + width), label, fill=(0, 0, 0), font=font)
    return np.asarray(img)
