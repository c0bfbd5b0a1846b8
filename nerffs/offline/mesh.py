"""MediaPipe face mesh and person mask (offline-assets.md section 4), and the mesh's named parts.

The mediapipe 0.10.21 wheel ships ``face_landmark.tflite`` (468 3-D points; Apache-2.0) and
``selfie_segmentation.tflite``; both run offline through the package's legacy ``solutions`` API. The package
is installed ``--no-deps`` (it pins numpy<2 but works with the project's numpy 2) and imported lazily, so
nothing here is needed by the official or smoke model sets.

Points are returned in pixels of the input image: ``(x, y, z)`` with x right, y down and z the depth in the
same pixel scale as x (mediapipe normalises z by the image width), smaller z = closer to the camera.

:func:`mesh_topology` derives, from mediapipe's connection tables and one set of points, the triangles and
the named contours the offline face model needs: the outer and inner lip contours split into upper and lower
chains, the eyelids, and the face oval. The mesh has three holes (the mouth opening and both eye openings);
their boundary chains are what :mod:`nerffs.offline.geometry` fills.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from nerffs.errors import MissingDependencyError

log = logging.getLogger(__name__)

NUM_MESH_POINTS = 468
INSTALL_HINT = ("pip install --no-deps mediapipe==0.10.21 (and the packages listed for it in requirements.txt); "
                "`make setup` does both")


def _import_mediapipe() -> Any:
    try:
        import mediapipe
        from mediapipe.python.solutions import face_mesh_connections  # noqa: F401  (checks the legacy API)
    except ImportError as exc:
        raise MissingDependencyError(f"the offline models need mediapipe ({exc}); run {INSTALL_HINT}") from exc
    return mediapipe


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence the C++ runtime's start-up chatter (TFLite/absl lines written straight to file descriptor 2)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to silence
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


_NATIVE = threading.RLock()
"""Held while mediapipe runs: its graphs crash the process when one is run from several threads at once (one
pipeline serves concurrent calls with one parser), and ``quiet_native_stderr`` swaps the process-wide file
descriptor 2. A face mesh is a few tens of milliseconds, so taking turns costs little."""


class MediaPipeFace:
    """Face mesh (468 points) and person segmentation of uint8 RGB images; models load on first use.

    Args:
        static_image_mode: True treats every image independently (photos); False tracks a face across the
            consecutive frames of one video, which is faster and steadier.
    """

    def __init__(self, static_image_mode: bool = True) -> None:
        self.static_image_mode = static_image_mode
        self._mesh: Any = None
        self._seg: Any = None

    def _mesh_model(self) -> Any:
        if self._mesh is None:
            mp = _import_mediapipe()
            with quiet_native_stderr():
                self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=self.static_image_mode,
                                                             max_num_faces=1, refine_landmarks=False,
                                                             min_detection_confidence=0.3)
        return self._mesh

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """[468, 3] float64 points (pixels; z in the pixel scale of x), or None when no face is found."""
        rgb = _check_rgb(rgb)
        with _NATIVE:
            model = self._mesh_model()
            with quiet_native_stderr():  # the graph logs once more on the first face it sees
                result = model.process(rgb)
        if not result.multi_face_landmarks:
            return None
        h, w = rgb.shape[:2]
        pts = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark[:NUM_MESH_POINTS]])
        return pts * np.array([w, h, w], dtype=np.float64)

    def person_mask(self, rgb: np.ndarray) -> np.ndarray:
        """[H, W] float32 in [0, 1]: probability that a pixel belongs to the person (selfie segmentation)."""
        rgb = _check_rgb(rgb)
        with _NATIVE:
            if self._seg is None:
                mp = _import_mediapipe()
                with quiet_native_stderr():
                    self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
            with quiet_native_stderr():
                mask = self._seg.process(rgb).segmentation_mask
        return np.asarray(mask, dtype=np.float32)

    def close(self) -> None:
        with _NATIVE:
            for model in (self._mesh, self._seg):
                if model is not None:
                    model.close()
            self._mesh = self._seg = None


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {getattr(rgb, 'dtype', type(rgb))} "
                         f"{getattr(rgb, 'shape', '')}")
    return np.ascontiguousarray(rgb)


# ---- topology ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chain:
    """A contour split at its corners: ``upper`` and ``lower`` vertex chains, each ordered from the image-left
    corner to the image-right corner (both chains start and end on the same two corner vertices)."""

    upper: np.ndarray
    lower: np.ndarray

    @property
    def vertices(self) -> np.ndarray:
        return np.unique(np.concatenate([self.upper, self.lower]))


@dataclass(frozen=True)
class MeshTopology:
    """Triangles and named contours of the 468-point mesh (indices into the point array).

    Attributes:
        triangles: [F, 3] int64, counter-clockwise in the image of the points they were derived from.
        lips_outer / lips_inner: outer and inner lip contours. The inner one bounds the mouth hole.
        eyes: the two eye-opening contours (image-left eye first); each bounds a hole.
        face_oval: [K] the outline loop, in order.
    """

    triangles: np.ndarray
    lips_outer: Chain
    lips_inner: Chain
    eyes: tuple[Chain, Chain]
    face_oval: np.ndarray

    @property
    def holes(self) -> tuple[Chain, ...]:
        """Contours of the mesh's holes: mouth, then the eyes."""
        return (self.lips_inner, *self.eyes)


def _connections() -> Any:
    _import_mediapipe()
    from mediapipe.python.solutions import face_mesh_connections

    return face_mesh_connections


def _undirected(pairs) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in pairs}


def _triangles(edges: set[tuple[int, int]]) -> np.ndarray:
    """Faces of the tessellation: its 3-cycles, minus the cycles that are not faces (all three edges shared
    by more than two cycles)."""
    adj: dict[int, set[int]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    cycles = {tuple(sorted((a, b, c))) for a, b in edges for c in adj[a] & adj[b]}
    use = Counter(e for a, b, c in cycles for e in ((a, b), (b, c), (a, c)))
    faces = [t for t in cycles if not all(use[e] > 2 for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])))]
    return np.array(sorted(faces), dtype=np.int64)


def _loop(pairs) -> np.ndarray:
    """The vertices of a closed contour given as edge pairs, in traversal order."""
    adj: dict[int, list[int]] = {}
    for a, b in _undirected(pairs):
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    if any(len(v) != 2 for v in adj.values()):
        raise ValueError("contour is not a simple loop")
    start = min(adj)
    order, prev = [start], None
    while True:
        nxt = [v for v in adj[order[-1]] if v != prev][0] if prev is not None else adj[start][0]
        if nxt == start:
            return np.array(order, dtype=np.int64)
        prev = order[-1]
        order.append(nxt)


def _split_loop(loop: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a loop at its image-left and image-right vertices into two left-to-right chains."""
    x = points[loop, 0]
    i, j = int(np.argmin(x)), int(np.argmax(x))
    rolled = np.roll(loop, -i)
    k = (j - i) % len(loop)
    a = rolled[:k + 1]
    b = np.concatenate([rolled[k:], rolled[:1]])[::-1]
    return a, b


def _split_by_height(loop: np.ndarray, points: np.ndarray) -> Chain:
    a, b = _split_loop(loop, points)
    upper_first = points[a[1:-1], 1].mean() <= points[b[1:-1], 1].mean()
    return Chain(upper=a, lower=b) if upper_first else Chain(upper=b, lower=a)


def _lip_loops(pairs) -> tuple[np.ndarray, np.ndarray]:
    """The lips table holds two loops (outer, inner); returns them in that order (outer has more spread)."""
    edges = _undirected(pairs)
    remaining, loops = set(edges), []
    while remaining:
        seed = next(iter(remaining))
        comp, frontier = {seed}, [seed]
        while frontier:
            a, b = frontier.pop()
            for e in list(remaining):
                if e not in comp and (a in e or b in e):
                    comp.add(e)
                    frontier.append(e)
        remaining -= comp
        loops.append(_loop(comp))
    if len(loops) != 2:
        raise ValueError(f"expected two lip contours, found {len(loops)}")
    return tuple(loops)  # type: ignore[return-value]


def mesh_topology(points: np.ndarray) -> MeshTopology:
    """Triangles and named contours of the mesh, using ``points`` [468, >= 2] (image pixels, y down) to tell
    left from right and upper from lower.

    The two inner-lip chains can coincide on a closed mouth; they are told apart by their tessellation edges:
    the inner chain that shares more edges with the outer upper chain is the upper one.
    """
    c = _connections()
    edges = _undirected(c.FACEMESH_TESSELATION)
    tri = _triangles(edges)
    p = np.asarray(points, dtype=np.float64)
    d1, d2 = p[tri[:, 1], :2] - p[tri[:, 0], :2], p[tri[:, 2], :2] - p[tri[:, 0], :2]
    clockwise_on_screen = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0] > 0  # y down: positive = clockwise
    tri[clockwise_on_screen] = tri[clockwise_on_screen][:, [0, 2, 1]]
    loop_a, loop_b = _lip_loops(c.FACEMESH_LIPS)
    spread = lambda lp: np.ptp(p[lp, 1]) + np.ptp(p[lp, 0])  # noqa: E731
    outer_loop, inner_loop = (loop_a, loop_b) if spread(loop_a) > spread(loop_b) else (loop_b, loop_a)
    outer = _split_by_height(outer_loop, p)
    a, b = _split_loop(inner_loop, p)
    links = lambda chain: sum((min(u, v), max(u, v)) in edges for u in chain for v in outer.upper)  # noqa: E731
    inner = Chain(upper=a, lower=b) if links(a[1:-1]) >= links(b[1:-1]) else Chain(upper=b, lower=a)
    eyes = sorted((_split_by_height(_loop(t), p) for t in (c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE)),
                  key=lambda ch: p[ch.upper, 0].mean())
    return MeshTopology(triangles=tri, lips_outer=outer, lips_inner=inner, eyes=(eyes[0], eyes[1]),
                        face_oval=_loop(c.FACEMESH_FACE_OVAL))
