"""FFHQ-style face alignment from 68 landmarks, with the inverse transform for pasting results back.

The crop follows the recipe used to build FFHQ (Karras et al., "A Style-Based Generator Architecture for GANs",
CVPR 2019, appendix A), which is the input format StyleNeRF's FFHQ generator and NeRFFaceSpeech expect
(spec-pipeline.md section 6: "the input must already be FFHQ-aligned"):

1. Quad: an oriented square centred a little below the eyes (``eye_avg + 0.1 * eye_to_mouth``). Its x axis
   averages the eye-to-eye direction and the eye-to-mouth direction turned by 90 degrees; its half side is
   ``max(2 * |eye_to_eye|, 1.8 * |eye_to_mouth|)``.
2. Shrink: when the quad is more than twice as large as the transform's input needs, downscale the photo by an
   integer factor first (antialiased), so the final bilinear sampling never skips source pixels.
3. Crop: keep only the quad's bounding box plus a 10 % border.
4. Pad: where the quad leaves the photo, reflect-pad it and hide the mirror seam: blend towards a Gaussian-blurred
   copy (sigma 2 % of the quad side) and then towards the median colour, more strongly away from the photo.
5. Transform: sample the quad into a ``transform_size`` square with bilinear interpolation, then downscale to
   ``output_size`` with a Lanczos filter (supersampling; see ``AlignConfig.transform_size``).

Coordinates are pixel centres: pixel ``(i, j)`` of an image has centre ``(x, y) = (i, j)``. The mapping between
aligned and original pixels is a similarity transform defined by the quad alone (steps 2-4 are exact
changes of coordinates), so it is returned as a 3x3 matrix and used by ``paste_back``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from nerffs.errors import InputError, TinyFaceError
from nerffs.preprocess.image import ImageSource, load_image
from nerffs.preprocess.landmarks import FaceLandmarks, LandmarkDetector, detect_landmarks

log = logging.getLogger(__name__)


@dataclass
class AlignConfig:
    """Settings of the FFHQ-style crop."""

    output_size: int = 512
    """Side of the aligned square image in pixels (the generator's input resolution, e.g. 512 or 1024)."""
    transform_size: int | None = None
    """Side of the supersampled square sampled from the quad before the final Lanczos downscale. None adapts
    it to the photo: ``output_size * k`` with ``k = ceil(crop side / output_size)`` clamped to 1..4, enough that
    every source pixel is sampled; FFHQ always used ``4 * output_size`` (4096 for 1024), which is slower
    but gives the same result up to resampling noise when the face is smaller than the output."""
    enable_padding: bool = True
    """Reflect-pad with blur where the quad leaves the photo (False leaves those pixels black)."""
    min_face_size: float = 128.0
    """Smallest accepted side of the crop square, in source pixels (the crop is about twice the face width);
    smaller faces raise ``TinyFaceError`` because they would be upsampled into mush."""

    def resolved_transform_size(self, crop_side: float) -> int:
        """``transform_size`` with the default applied for a crop ``crop_side`` pixels wide, validated."""
        if self.output_size < 16:
            raise InputError(f"AlignConfig.output_size must be at least 16 (got {self.output_size})")
        factor = min(max(math.ceil(crop_side / self.output_size), 1), 4)
        size = factor * self.output_size if self.transform_size is None else int(self.transform_size)
        if size < self.output_size:
            raise InputError(f"AlignConfig.transform_size ({size}) must be >= output_size ({self.output_size})")
        return size


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """An aligned face crop and its geometric relation to the original photo.

    Attributes:
        image: ``[S, S, 3]`` uint8 RGB aligned crop, ``S = AlignConfig.output_size``.
        quad: ``[4, 2]`` corners of the crop in original pixels: top-left, bottom-left, bottom-right, top-right
            (the outer corners of the aligned image, i.e. aligned pixel centres ``(-0.5, -0.5)`` ... ).
        matrix: ``[3, 3]`` affine matrix mapping homogeneous aligned pixel coordinates ``(x, y, 1)`` to
            original pixel coordinates.
        inverse: ``[3, 3]`` inverse of ``matrix`` (original -> aligned).
        source_shape: ``(H, W)`` of the original photo.
        points: ``[68, 2]`` the landmarks used, in aligned pixel coordinates.
    """

    image: np.ndarray
    quad: np.ndarray
    matrix: np.ndarray
    inverse: np.ndarray
    source_shape: tuple[int, int]
    points: np.ndarray

    @property
    def size(self) -> int:
        """Side ``S`` of the aligned image."""
        return int(self.image.shape[0])

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Map ``[N, 2]`` aligned pixel coordinates to original pixel coordinates."""
        return apply_affine(self.matrix, points)

    def to_aligned(self, points: np.ndarray) -> np.ndarray:
        """Map ``[N, 2]`` original pixel coordinates to aligned pixel coordinates."""
        return apply_affine(self.inverse, points)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a ``[3, 3]`` affine matrix to ``[N, 2]`` points; returns ``[N, 2]`` float64."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:2, :2].T + matrix[:2, 2]


def ffhq_quad(points: np.ndarray) -> np.ndarray:
    """The FFHQ crop square from 68 landmarks (step 1 of the module docstring).

    Args:
        points: ``[68, 2]`` landmarks in pixels (iBUG 68 layout).

    Returns:
        ``[4, 2]`` float64 corners: top-left, bottom-left, bottom-right, top-right (pixel-centre coordinates).
    """
    pts = np.asarray(points, dtype=np.float64)
    eye_left, eye_right = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (pts[48] + pts[54]) / 2 - eye_avg
    # The eye-to-mouth vector turned by -90 degrees points along +x for an upright face.
    x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    norm = np.hypot(*x)
    half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    if not np.isfinite(pts).all() or norm < 1e-6 or half < 1e-6:
        raise InputError("degenerate landmarks (eyes and mouth coincide or are not finite); re-run detection")
    x = x / norm * half
    y = np.array([-x[1], x[0]])  # x turned by +90 degrees: points from the eyes towards the mouth
    center = eye_avg + 0.1 * eye_to_mouth
    return np.stack([center - x - y, center - x + y, center + x + y, center + x - y])


def quad_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """``[3, 3]`` affine map from aligned pixel coordinates of an ``size``-pixel square to the quad's frame.

    Aligned pixel centre ``a`` lies at fraction ``(a + 0.5) / size`` along the quad's top and left edges.
    """
    q = np.asarray(quad, dtype=np.float64)
    ex, ey = (q[3] - q[0]) / size, (q[1] - q[0]) / size
    m = np.eye(3)
    m[:2, 0], m[:2, 1] = ex, ey
    m[:2, 2] = q[0] + 0.5 * (ex + ey)
    return m


def align_face(image: ImageSource, landmarks: FaceLandmarks | np.ndarray,
               cfg: AlignConfig | None = None) -> AlignedFace:
    """Crop and rotate ``image`` to an FFHQ-aligned square around the face given by ``landmarks``.

    Args:
        image: the original photo, anything ``load_image`` accepts (``[H, W, 3]`` uint8 RGB typically).
        landmarks: ``FaceLandmarks`` or a ``[68, 2]`` array of pixel coordinates in that photo.
        cfg: crop settings (default ``AlignConfig()``).

    Returns:
        ``AlignedFace`` with the ``[S, S, 3]`` crop and the aligned <-> original transforms.

    Raises:
        TinyFaceError: the crop square is smaller than ``cfg.min_face_size`` source pixels.
        InputError: unusable image or degenerate landmarks.
    """
    cfg = cfg or AlignConfig()
    rgb = load_image(image)
    points = landmarks.points if isinstance(landmarks, FaceLandmarks) else np.asarray(landmarks, np.float64)
    if points.shape != (68, 2):
        raise InputError(f"align_face needs [68, 2] landmarks (got {points.shape}); use detect_landmarks")
    quad = ffhq_quad(points)
    side = float(np.hypot(*(quad[3] - quad[0])))
    if side < cfg.min_face_size:
        raise TinyFaceError(f"face too small: its crop is {side:.0f} px wide in the source photo, below "
                            f"min_face_size={cfg.min_face_size:.0f}; use a larger or closer photo of the face "
                            "(or lower AlignConfig.min_face_size)")
    work, to_work = _prepare_source(rgb, quad, side, cfg.output_size, cfg.enable_padding)
    quad_work = apply_affine(to_work, quad)
    transform_size = cfg.resolved_transform_size(float(np.hypot(*(quad_work[3] - quad_work[0]))))
    log.debug("FFHQ crop: %.0f px quad, working image %dx%d, transform %d -> %d", side, work.width,
                 work.height, transform_size, cfg.output_size)
    sampled = work.transform((transform_size, transform_size), Image.Transform.QUAD,
                             tuple((quad_work + 0.5).reshape(-1)), Image.Resampling.BILINEAR)
    if cfg.output_size < transform_size:
        sampled = sampled.resize((cfg.output_size, cfg.output_size), Image.Resampling.LANCZOS)
    matrix = quad_matrix(quad, cfg.output_size)
    inverse = np.linalg.inv(matrix)
    return AlignedFace(image=np.asarray(sampled, dtype=np.uint8).copy(), quad=quad, matrix=matrix,
                       inverse=inverse, source_shape=(rgb.shape[0], rgb.shape[1]),
                       points=apply_affine(inverse, points))


def _prepare_source(rgb: np.ndarray, quad: np.ndarray, side: float, output_size: int,
                    enable_padding: bool) -> tuple[Image.Image, np.ndarray]:
    """Steps 2-4 (shrink, crop, pad). Returns the working image and the ``[3, 3]`` original -> working map."""
    img = Image.fromarray(rgb)
    to_work = np.eye(3)
    shrink = int(math.floor(side / output_size * 0.5))
    if shrink > 1:
        size = (max(1, round(img.width / shrink)), max(1, round(img.height / shrink)))
        sx, sy = size[0] / img.width, size[1] / img.height
        img = img.resize(size, Image.Resampling.LANCZOS)
        # Pixel centres scale about the image corner: x' = (x + 0.5) * s - 0.5.
        to_work = _affine(sx, sy, 0.5 * (sx - 1), 0.5 * (sy - 1)) @ to_work
        side *= (sx + sy) / 2
    quad_w = apply_affine(to_work, quad)
    border = max(int(round(side * 0.1)), 3)
    lo, hi = np.floor(quad_w.min(axis=0)), np.ceil(quad_w.max(axis=0))
    crop = (max(int(lo[0]) - border, 0), max(int(lo[1]) - border, 0),
            min(int(hi[0]) + border, img.width), min(int(hi[1]) + border, img.height))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise InputError("the face crop lies entirely outside the image; check the landmarks")
    if crop != (0, 0, img.width, img.height):
        img = img.crop(crop)
        to_work = _affine(1.0, 1.0, -crop[0], -crop[1]) @ to_work
        quad_w = apply_affine(to_work, quad)
    if enable_padding:
        img, to_work = _reflect_pad(img, quad_w, side, border, to_work)
    return img, to_work


def _reflect_pad(img: Image.Image, quad_w: np.ndarray, side: float, border: int,
                 to_work: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """Step 4: reflect-pad where the quad leaves the image and blend the padding into blur and median colour."""
    lo, hi = np.floor(quad_w.min(axis=0)), np.ceil(quad_w.max(axis=0))
    pad = [max(border - int(lo[0]), 0), max(border - int(lo[1]), 0),
           max(int(hi[0]) - img.width + border, 0), max(int(hi[1]) - img.height + border, 0)]
    if max(pad) <= border - 4:
        return img, to_work
    pad = [max(p, int(round(side * 0.3)), 1) for p in pad]  # left, top, right, bottom
    log.debug("the face crop leaves the photo; reflect-padding by %s px", pad)
    arr = np.pad(np.asarray(img, dtype=np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="reflect")
    h, w = arr.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    # 0 inside the photo's interior, rising to 1 at the padded image's edge.
    mask = np.maximum(1.0 - np.minimum(xx / pad[0], (w - 1 - xx) / pad[2]),
                      1.0 - np.minimum(yy / pad[1], (h - 1 - yy) / pad[3])).astype(np.float32)[:, :, None]
    sigma = side * 0.02
    arr += (gaussian_filter(arr, (sigma, sigma, 0)) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
    out = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    return out, _affine(1.0, 1.0, pad[0], pad[1]) @ to_work


def _affine(sx: float, sy: float, tx: float, ty: float) -> np.ndarray:
    """``[3, 3]`` axis-aligned scale-then-translate matrix."""
    return np.array([[sx, 0.0, tx], [0.0, sy, ty], [0.0, 0.0, 1.0]])


def paste_back(original: ImageSource, rendered: np.ndarray, aligned: AlignedFace, feather: float = 0.1,
               mask: np.ndarray | None = None) -> np.ndarray:
    """Warp a rendered aligned face back into the original photo and blend it in.

    Args:
        original: the photo ``aligned`` was cut from, ``[H, W, 3]`` uint8 (or anything ``load_image`` accepts).
        rendered: ``[R, R, 3]`` uint8 image in the aligned frame; R may differ from the aligned size (e.g. a
            1024 render of a 512 crop), it is scaled to the same quad.
        aligned: the ``AlignedFace`` returned by ``align_face`` for ``original``.
        feather: width of the linear blend ramp at the crop's edges, as a fraction of the crop side (0 = hard edge).
        mask: optional ``[R, R]`` weights in [0, 1] (e.g. a face-parsing mask) multiplied into the blend.

    Returns:
        ``[H, W, 3]`` uint8 composite; ``original`` is not modified.
    """
    base = load_image(original)
    if base.shape[:2] != tuple(aligned.source_shape):
        raise InputError(f"paste_back: the photo is {base.shape[1]}x{base.shape[0]} but the alignment was computed "
                         f"on {aligned.source_shape[1]}x{aligned.source_shape[0]}; pass the same photo")
    rendered = np.asarray(rendered)
    if rendered.ndim != 3 or rendered.shape[2] != 3 or rendered.shape[0] != rendered.shape[1] \
            or rendered.dtype != np.uint8:
        raise InputError(f"paste_back needs a square uint8 [R, R, 3] render (got {rendered.dtype} "
                         f"{rendered.shape}); convert with from_tensor")
    if not 0.0 <= feather <= 0.5:
        raise InputError(f"feather must be in [0, 0.5] (got {feather})")
    weight = _blend_weight(rendered.shape[0], feather, mask)
    src, weight = _prefilter(rendered, weight, aligned)
    box = _paste_region(aligned, base.shape[:2])
    if box is None:
        return base.copy()
    coeffs = _pil_affine_coeffs(aligned, src.shape[0], box)
    x0, y0, x1, y1 = box
    size = (x1 - x0, y1 - y0)
    warped = np.asarray(Image.fromarray(src).transform(size, Image.Transform.AFFINE, coeffs,
                                                       Image.Resampling.BILINEAR), dtype=np.float32)
    alpha = np.asarray(Image.fromarray(weight).transform(size, Image.Transform.AFFINE, coeffs,
                                                                   Image.Resampling.BILINEAR))[:, :, None]
    out = base.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(np.rint(region + (warped - region) * np.clip(alpha, 0, 1)), 0, 255).astype(np.uint8)
    return out


def fit_photo(photo: np.ndarray, aligned: AlignedFace, max_size: int | None) -> tuple[np.ndarray, AlignedFace]:
    """The photo scaled down (Lanczos) so its longer side is at most ``max_size``, and ``aligned`` moved onto it,
    for pasting back into a smaller frame. Sides are rounded to even numbers (H.264 yuv420p needs them).
    A photo that already fits (or ``max_size`` None) is returned unchanged.

    Args:
        photo: ``[H, W, 3]`` uint8, the photo ``aligned`` was computed on.
        aligned: its alignment.
        max_size: longest side allowed, in pixels (>= 16), or None.

    Returns:
        (``[H', W', 3]`` uint8 photo, ``AlignedFace`` whose transforms and quad refer to it).
    """
    h, w = photo.shape[:2]
    if max_size is None or max(h, w) <= max_size:
        return photo, aligned
    if max_size < 16:
        raise InputError(f"max_size must be at least 16 pixels, got {max_size}")
    scale = max_size / max(h, w)
    new_w, new_h = (max(2, int(round(v * scale / 2)) * 2) for v in (w, h))
    small = np.asarray(Image.fromarray(photo).resize((new_w, new_h), Image.Resampling.LANCZOS))
    sx, sy = new_w / w, new_h / h
    # Pixel centres scale about the image corner: x' = (x + 0.5) * s - 0.5.
    to_small = _affine(sx, sy, 0.5 * (sx - 1), 0.5 * (sy - 1))
    matrix = to_small @ aligned.matrix
    moved = AlignedFace(image=aligned.image, quad=apply_affine(to_small, aligned.quad), matrix=matrix,
                        inverse=np.linalg.inv(matrix), source_shape=(new_h, new_w), points=aligned.points)
    return np.ascontiguousarray(small), moved


def _blend_weight(size: int, feather: float, mask: np.ndarray | None) -> np.ndarray:
    """``[size, size]`` float32 blend weight: 1 inside, ramping linearly to 0 over ``feather * size`` at edges."""
    t = np.arange(size, dtype=np.float32) + 0.5
    ramp = np.minimum(t, size - t) / max(feather * size, 1e-6)
    ramp = np.clip(ramp, 0.0, 1.0)
    weight = np.outer(ramp, ramp)
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (size, size):
            raise InputError(f"paste_back mask must be [{size}, {size}] like the render (got {mask.shape})")
        weight = weight * np.clip(mask, 0.0, 1.0)
    return np.ascontiguousarray(weight, dtype=np.float32)


def _prefilter(rendered: np.ndarray, weight: np.ndarray, aligned: AlignedFace) -> tuple[np.ndarray, np.ndarray]:
    """Downscale (Lanczos) a render that is much finer than the photo, so bilinear warping does not alias."""
    side = float(np.hypot(*(aligned.quad[3] - aligned.quad[0])))
    target = max(8, int(math.ceil(side)))
    if target >= rendered.shape[0]:
        return rendered, weight
    small = np.asarray(Image.fromarray(rendered).resize((target, target), Image.Resampling.LANCZOS))
    small_w = np.asarray(Image.fromarray(weight).resize((target, target), Image.Resampling.BILINEAR))
    return small, np.ascontiguousarray(small_w, dtype=np.float32)


def _paste_region(aligned: AlignedFace, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Integer box ``(x0, y0, x1, y1)`` of original pixels covered by the quad, clipped to the photo."""
    lo, hi = np.floor(aligned.quad.min(axis=0)), np.ceil(aligned.quad.max(axis=0)) + 1
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), shape[1]), min(int(hi[1]), shape[0])
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


def _pil_affine_coeffs(aligned: AlignedFace, size: int, box: tuple[int, int, int, int]) -> tuple[float, ...]:
    """PIL AFFINE coefficients sampling a ``size``-pixel render for the output region ``box`` of the photo.

    PIL works in pixel-edge coordinates (pixel ``i`` spans ``[i, i + 1)``) on both the output and the input side.
    """
    # original pixel centre -> aligned (S) pixel centre -> render (size) pixel centre
    s = size / aligned.size
    to_render = _affine(s, s, 0.5 * (s - 1), 0.5 * (s - 1)) @ aligned.inverse
    # output edge coords u -> photo centre coords (u - 0.5 + box origin); render centre -> edge coords (+ 0.5)
    from_out = _affine(1.0, 1.0, box[0] - 0.5, box[1] - 0.5)
    m = _affine(1.0, 1.0, 0.5, 0.5) @ to_render @ from_out
    return (m[0, 0], m[0, 1], m[0, 2], m[1, 0], m[1, 1], m[1, 2])


def align_photo(image: ImageSource, cfg: AlignConfig | None = None, detector: LandmarkDetector | None = None,
                face_index: int | None = None) -> AlignedFace:
    """Load a photo, find the face and align it: ``load_image`` + ``detect_landmarks`` + ``align_face``.

    Args:
        image: a file path, PIL image or array (see ``load_image``).
        cfg: crop settings.
        detector: landmark detector (default: a fresh ``DlibLandmarks``; pass one to reuse its loaded model).
        face_index: which face when there are several (None = face 0, the best ranked).

    Returns:
        ``AlignedFace`` (its ``source_shape`` is the EXIF-corrected photo's).
    """
    rgb = load_image(image)
    return align_face(rgb, detect_landmarks(rgb, face_index=face_index, detector=detector), cfg)
