"""load_image on every input form a user may hand in, and the uint8 <-> [-1, 1] tensor helpers."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nerffs.errors import InputError
from nerffs.preprocess import from_tensor, load_image, to_tensor


def _write_rgb16_png(path: Path, rgb: np.ndarray) -> None:
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot write one)."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    h, w, _ = rgb.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("ext", ["png", "webp", "bmp", "tiff"])
def test_lossless_formats_round_trip(tmp_path, astronaut, ext):
    path = tmp_path / f"a.{ext}"
    Image.fromarray(astronaut).save(path, **({"lossless": True} if ext == "webp" else {}))
    out = load_image(path)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, astronaut)


def test_jpeg_and_str_path(tmp_path, astronaut):
    path = tmp_path / "a.jpg"
    Image.fromarray(astronaut).save(path, quality=95)
    out = load_image(str(path))
    assert out.shape == (512, 512, 3)
    assert np.abs(out.astype(float) - astronaut).mean() < 3.0


def test_rgba_is_composited_over_background(tmp_path, astronaut):
    rgba = np.dstack([astronaut, np.full((512, 512), 255, np.uint8)])
    rgba[:100, :100, :3] = (0, 255, 0)  # garbage colour under fully transparent pixels
    rgba[:100, :100, 3] = 0
    rgba[200:210, 200:210, 3] = 128
    path = tmp_path / "a.png"
    Image.fromarray(rgba).save(path)
    out = load_image(path)
    assert (out[:100, :100] == 255).all()
    np.testing.assert_array_equal(out[300:], astronaut[300:])
    half = np.round(astronaut[200:210, 200:210].astype(float) * 128 / 255 + 255 * 127 / 255)
    assert np.abs(out[200:210, 200:210] - half).max() <= 1
    assert (load_image(rgba, background=(0, 0, 0))[:100, :100] == 0).all()


def test_grayscale_is_replicated(tmp_path, astronaut):
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    path = tmp_path / "g.png"
    Image.fromarray(gray).save(path)
    out = load_image(path)
    assert out.shape == (512, 512, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_16bit_grayscale_png(tmp_path, astronaut):
    gray = np.asarray(Image.fromarray(astronaut).convert("L")).astype(np.uint16) * 257
    path = tmp_path / "g16.png"
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode.startswith("I")  # really stored as 16-bit
    out = load_image(path)
    np.testing.assert_array_equal(out[:, :, 1], (gray // 257).astype(np.uint8))


def test_16bit_rgb_png(tmp_path):
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, size=(20, 30, 3)).astype(np.uint16)
    path = tmp_path / "rgb16.png"
    _write_rgb16_png(path, rgb16)
    out = load_image(path)
    assert out.shape == (20, 30, 3)
    assert np.abs(out.astype(int) - rgb16.astype(int) / 257).max() <= 1.0


def test_uint16_array():
    arr = np.full((4, 5, 3), 65535, np.uint16)
    arr[0, 0] = 0
    out = load_image(arr)
    assert out.dtype == np.uint8 and out[1, 1, 0] == 255 and out[0, 0, 0] == 0


def test_exif_rotated_jpeg_is_upright(tmp_path, astronaut):
    upright = np.ascontiguousarray(astronaut[:, 64:448])  # 512 tall, 384 wide
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what a sideways camera stores
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    stored.save(path, exif=exif, quality=95)
    assert Image.open(path).size == (512, 384)
    out = load_image(path)
    assert out.shape == (512, 384, 3)
    assert np.abs(out.astype(float) - upright).mean() < 3.0


def test_palette_with_transparency_and_animated_gif(tmp_path):
    frames = [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    out = load_image(path)
    assert out.shape == (6, 8, 3) and tuple(out[0, 0]) == (255, 0, 0)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    pal.info["transparency"] = 0
    out = load_image(pal)
    assert (out == 255).all()  # colour 0 is transparent -> white background


def test_truncated_jpeg_is_a_clear_error(tmp_path, astronaut):
    full = tmp_path / "full.jpg"
    Image.fromarray(astronaut).save(full)
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(full.read_bytes()[:4000])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(bad)


def test_text_file_named_png_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(InputError, match="not a readable image"):
        load_image(path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="not a readable image"):
        load_image(tmp_path / "empty.jpg")


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path)


def test_error_messages_are_one_line(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(InputError) as info:
        load_image(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arr, expected", [
    (np.zeros((4, 5), np.uint8), (4, 5, 3)),
    (np.zeros((4, 5, 1), np.uint8), (4, 5, 3)),
    (np.ones((4, 5, 3), np.float32), (4, 5, 3)),
    (np.ones((4, 5), bool), (4, 5, 3)),
])
def test_array_inputs(arr, expected):
    out = load_image(arr)
    assert out.shape == expected and out.dtype == np.uint8
    assert out.max() == (0 if arr.dtype == np.uint8 else 255)


@pytest.mark.parametrize("arr, match", [
    (np.zeros((3, 8, 8), np.uint8), "expected"),
    (np.zeros((8, 8, 2), np.uint8), "expected"),
    (np.full((8, 8, 3), 2.0), r"\[0, 1\]"),
    (np.full((8, 8, 3), -1, np.int32), "0, 65535"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
    (np.zeros((8, 8, 3), np.complex64), "dtype"),
])
def test_bad_arrays(arr, match):
    with pytest.raises(InputError, match=match):
        load_image(arr)


def test_bad_source_type():
    with pytest.raises(InputError, match="cannot load"):
        load_image(12345)


def test_tensor_round_trip_is_exact(astronaut):
    t = to_tensor(astronaut)
    assert t.shape == (1, 3, 512, 512) and t.dtype == torch.float32
    assert t.min() >= -1.0 and t.max() <= 1.0
    assert torch.allclose(t[0, :, 10, 20], torch.tensor(astronaut[10, 20], dtype=torch.float32) / 127.5 - 1)
    np.testing.assert_array_equal(from_tensor(t)[0], astronaut)
    batch = np.stack([astronaut, astronaut[::-1]])
    np.testing.assert_array_equal(from_tensor(to_tensor(batch)), batch)


def test_from_tensor_clips_and_accepts_3d():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).view(1, 1, 5).expand(3, 1, 5)
    out = from_tensor(x)
    assert out.shape == (1, 5, 3)
    assert out[0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_tensor_helpers_reject_bad_shapes():
    with pytest.raises(InputError, match="to_tensor"):
        to_tensor(np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="to_tensor"):
        to_tensor(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(InputError, match="from_tensor"):
        from_tensor(torch.zeros(1, 4, 8, 8))
