"""Robust image loading and uint8 <-> tensor conversion for the face front end.

``load_image`` turns whatever a user hands in (a path to a JPEG/PNG/WebP/..., a PIL image or a numpy array)
into one canonical form, ``[H, W, 3] uint8 RGB`` with EXIF orientation applied, or raises an ``InputError``
whose single line names the problem and the fix. Everything downstream (landmarks, alignment, inversion)
can then assume that form.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from nerffs.errors import InputError

log = logging.getLogger(__name__)

ImageSource = str | os.PathLike | Image.Image | np.ndarray
"""Anything ``load_image`` accepts."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def load_image(source: ImageSource, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Load an image as ``[H, W, 3] uint8`` RGB, whatever its file format, mode, bit depth or orientation.

    Files are decoded with Pillow (JPEG, PNG, WebP, BMP, TIFF, GIF, ...). The EXIF orientation tag is applied,
    so a phone photo comes out upright. Grayscale is replicated to three channels, 16-bit data is reduced to
    8 bits, palette/CMYK/etc. are converted to RGB, and an alpha channel is composited over ``background``
    (transparent pixels carry arbitrary colours that must not reach the face detector). For animated files
    the first frame is used.

    Args:
        source: a file path, a PIL image, or an array ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]``
            of dtype uint8, uint16, bool or float in [0, 1].
        background: RGB colour that transparent pixels are composited over.

    Returns:
        ``[H, W, 3]`` uint8 RGB array, C-contiguous. An input array already in that form is returned as is
        (not copied); every other input gives a new array.

    Raises:
        InputError: the file is missing, is not an image, is corrupt or truncated, or the array has an
            unsupported shape, dtype or value range.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, background)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(_upright(source), background)
    if isinstance(source, (str, os.PathLike)):
        return _pil_to_rgb(_open_file(Path(source)), background)
    raise InputError(f"cannot load an image from a {type(source).__name__}; pass a file path, a PIL image "
                     "or a numpy array")


@dataclass(frozen=True)
class ImageLayers:
    """A photo as animated plus, for a partly transparent one, what compositing hid.

    Attributes:
        rgb: ``[H, W, 3]`` uint8, exactly ``load_image(source)``.
        straight: ``[H, W, 3]`` uint8 colour channels before compositing, or None for an opaque photo.
        alpha: ``[H, W]`` uint8 opacity, or None for an opaque photo.
    """

    rgb: np.ndarray
    straight: np.ndarray | None = None
    alpha: np.ndarray | None = None


def load_image_layers(source: ImageSource, background: tuple[int, int, int] = (255, 255, 255)) -> ImageLayers:
    """``load_image`` that also keeps the colour channels and opacity of a partly transparent photo (face
    detection looks at both: a semi-transparent face composited over white can fade below detection)."""
    rgba: np.ndarray | None = None
    if isinstance(source, np.ndarray) and source.ndim == 3 and source.shape[2] == 4:
        rgba = _to_uint8(source, False) if source.shape[0] and source.shape[1] else None
    elif isinstance(source, (str, os.PathLike, Image.Image)):
        img = _open_file(Path(source)) if not isinstance(source, Image.Image) else _upright(source)
        has_alpha = img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info)
        if not has_alpha or img.width == 0 or img.height == 0:
            return ImageLayers(_pil_to_rgb(img, background))
        rgba = np.asarray(img.convert("RGBA"))
    if rgba is None:
        return ImageLayers(load_image(source, background))
    rgb = _composite(rgba, background)
    if int(rgba[:, :, 3].min()) == 255:
        return ImageLayers(rgb)
    return ImageLayers(rgb, np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3]))


def _open_file(path: Path) -> Image.Image:
    """Open and fully decode ``path`` with EXIF orientation applied; errors become one-line ``InputError``."""
    if not path.exists():
        raise InputError(f"image file not found: {path}; check the path")
    if not path.is_file():
        raise InputError(f"{path} is not a file; pass the path of an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if getattr(img, "n_frames", 1) > 1:
                    log.info("%s has %d frames; using the first", path, img.n_frames)
                img.seek(0)
                img.load()
                return _upright(img)
    except UnidentifiedImageError as exc:
        raise InputError(f"{path} is not a readable image (unknown format or not an image file); "
                         "use a JPEG, PNG or WebP photo") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{path} is too large to decode safely ({exc}); downscale it first") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path} is corrupt or truncated ({reason}); re-export or re-download the image") from exc


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; an unreadable EXIF block is logged and ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception as exc:  # malformed EXIF data raises a variety of errors (struct, KeyError, ...)
        log.warning("ignoring unreadable EXIF orientation (%s: %s)", type(exc).__name__, exc)
        return img.copy()


def _pil_to_rgb(img: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """Convert a decoded PIL image of any mode to ``[H, W, 3]`` uint8 RGB."""
    if img.width == 0 or img.height == 0:
        raise InputError(f"image is empty ({img.width}x{img.height}); use a real photo")
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        # 'I' (32-bit int) holds 8- or 16-bit data; _to_uint8 tells them apart by the value range.
        return _array_to_rgb(np.asarray(img), background, sixteen_bit=img.mode in _SIXTEEN_BIT_MODES)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        img = img.convert("RGBA")
        return _composite(np.asarray(img), background)
    return np.array(img.convert("RGB"), dtype=np.uint8)


def _array_to_rgb(arr: np.ndarray, background: tuple[int, int, int], sixteen_bit: bool = False) -> np.ndarray:
    """Validate an array image and convert it to ``[H, W, 3]`` uint8 RGB."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise InputError(f"image array has shape {tuple(arr.shape)}; expected [H, W], [H, W, 3] or [H, W, 4] "
                         "(channels last)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"image array is empty (shape {tuple(arr.shape)}); use a real photo")
    arr = _to_uint8(arr, sixteen_bit)
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if arr.shape[2] == 4:
        return _composite(arr, background)
    return np.ascontiguousarray(arr)


def _to_uint8(arr: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    """Map bool / uint8 / uint16 / int (16-bit data) / float [0, 1] values to uint8."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if not np.isfinite(arr).all() or lo < 0.0 or hi > 1.0:
            raise InputError(f"float image values must lie in [0, 1] (got range [{lo:.3g}, {hi:.3g}]); "
                             "rescale it or pass uint8 data")
        return np.round(arr * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise InputError(f"integer image values must lie in [0, 65535] (got [{lo}, {hi}]); "
                             "pass uint8 or uint16 data")
        # 16-bit data (uint16 arrays, PNG 'I;16'/'I' modes) spans 0..65535; 65535 / 257 = 255 exactly.
        if arr.dtype == np.uint16 or sixteen_bit or hi > 255:
            return np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
        return arr.astype(np.uint8)
    raise InputError(f"unsupported image dtype {arr.dtype}; pass uint8, uint16 or float data in [0, 1]")


def _composite(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Alpha-composite ``[H, W, 4]`` uint8 over a constant ``background``; returns ``[H, W, 3]`` uint8."""
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    out = rgba[:, :, :3].astype(np.float32) * alpha + bg * (1.0 - alpha)
    return np.ascontiguousarray(np.clip(np.round(out), 0, 255).astype(np.uint8))


def to_tensor(image: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """Convert uint8 HWC image(s) to the repository's image convention, float ``[B, 3, H, W]`` in [-1, 1].

    ``u / 127.5 - 1`` is the exact inverse of ``from_tensor``'s ``x * 127.5 + 128`` followed by truncation,
    so ``from_tensor(to_tensor(u)) == u`` bit for bit.

    Args:
        image: ``[H, W, 3]`` or ``[B, H, W, 3]`` uint8 RGB.
        device: device of the result (default CPU).

    Returns:
        float32 tensor ``[B, 3, H, W]`` in [-1, 1] (B = 1 for a single image).
    """
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise InputError(f"to_tensor expects uint8 [H, W, 3] or [B, H, W, 3] (got {arr.dtype} "
                         f"{tuple(np.shape(image))}); run load_image first")
    arr = np.ascontiguousarray(arr) if arr.flags.writeable else arr.copy()  # torch wants writable memory
    t = torch.from_numpy(arr).to(device=device).permute(0, 3, 1, 2)
    return t.to(torch.float32) / 127.5 - 1.0


def from_tensor(images: torch.Tensor) -> np.ndarray:
    """Convert float images in [-1, 1] back to uint8 HWC (values outside the range are clipped).

    Uses ``x * 127.5 + 128`` then truncation, the rounding NeRFFaceSpeech applies to generator output
    (spec-pipeline.md section 3.6).

    Args:
        images: ``[B, 3, H, W]`` or ``[3, H, W]`` float tensor in [-1, 1], any device.

    Returns:
        ``[B, H, W, 3]`` uint8 array, or ``[H, W, 3]`` for a 3-D input.
    """
    if images.ndim not in (3, 4) or images.shape[-3] != 3:
        raise InputError(f"from_tensor expects [B, 3, H, W] or [3, H, W] (got {tuple(images.shape)})")
    x = (images.detach().to(torch.float32) * 127.5 + 128.0).clamp(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()
