"""FFHQ alignment: output geometry against the quad definition, exactness of the transforms, paste-back, errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nerffs.errors import InputError, NoFaceError
from nerffs.preprocess import (AlignConfig, TinyFaceError, align_face, align_photo, apply_affine, ffhq_quad,
                               paste_back)


def canonical_positions(points: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Where the FFHQ definition puts the eye centres and mouth corners in a ``size`` aligned image.

    Written out independently of the library: the crop is a square centred at c = eye_avg + 0.1 * eye_to_mouth,
    with its x axis along eye_to_eye + rot(-90)(eye_to_mouth), half side max(2 |eye_to_eye|, 1.8 |eye_to_mouth|).
    A point's aligned pixel centre is size/2 + size * (offset from c along an axis) / (2 * half side) - 0.5.
    """
    eye_l, eye_r = points[36:42].mean(0), points[42:48].mean(0)
    eye_avg, mouth_avg = (eye_l + eye_r) / 2, (points[48] + points[54]) / 2
    e2e, e2m = eye_r - eye_l, mouth_avg - eye_avg
    x_dir = e2e + np.array([e2m[1], -e2m[0]])
    x_dir /= np.linalg.norm(x_dir)
    y_dir = np.array([-x_dir[1], x_dir[0]])
    half = max(2 * np.linalg.norm(e2e), 1.8 * np.linalg.norm(e2m))
    center = eye_avg + 0.1 * e2m

    def to_aligned(p: np.ndarray) -> np.ndarray:
        d = p - center
        return size / 2 + size * np.array([d @ x_dir, d @ y_dir]) / (2 * half) - 0.5

    return {"eye_left": to_aligned(eye_l), "eye_right": to_aligned(eye_r),
            "mouth_left": to_aligned(points[48]), "mouth_right": to_aligned(points[54])}


def smooth_field(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth RGB test pattern (values within [0, 255]) sampled at pixel-centre coordinates."""
    return np.stack([128 + 100 * np.sin(x / 23.0 + 0.3) * np.cos(y / 31.0),
                     128 + 90 * np.cos((x + y) / 41.0),
                     40 + 0.08 * x + 0.06 * y], axis=-1)


def render_field(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    return np.clip(np.rint(smooth_field(xx, yy)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [256, 512])
def test_output_size_and_canonical_landmarks(astronaut, astronaut_face, dlib_detector, size):
    aligned = align_face(astronaut, astronaut_face, AlignConfig(output_size=size))
    assert aligned.image.shape == (size, size, 3) and aligned.image.dtype == np.uint8
    expected = canonical_positions(astronaut_face.points, size)
    again = dlib_detector.detect(aligned.image)
    tol = 5.0 * size / 512  # "a few pixels" at 512
    np.testing.assert_allclose(again.eye_centers[0], expected["eye_left"], atol=tol)
    np.testing.assert_allclose(again.eye_centers[1], expected["eye_right"], atol=tol)
    np.testing.assert_allclose(again.mouth_corners[0], expected["mouth_left"], atol=tol)
    np.testing.assert_allclose(again.mouth_corners[1], expected["mouth_right"], atol=tol)
    # The returned transform agrees with the definition exactly.
    np.testing.assert_allclose(aligned.to_aligned(astronaut_face.eye_centers[:1])[0], expected["eye_left"],
                               atol=1e-9)


def test_upright_face_lands_centred(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face)
    eyes = aligned.points[36:48].mean(0)
    mouth = aligned.points[[48, 54]].mean(0)
    assert abs(eyes[0] - 255.5) < 15 and abs(mouth[0] - 255.5) < 15
    assert eyes[1] < 255.5 < mouth[1]  # crop centre lies between eyes and mouth


def test_transform_matrices_round_trip(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face)
    np.testing.assert_allclose(aligned.matrix @ aligned.inverse, np.eye(3), atol=1e-12)
    pts = np.random.default_rng(0).uniform(-50, 600, size=(100, 2))
    np.testing.assert_allclose(aligned.to_original(aligned.to_aligned(pts)), pts, atol=1e-9)
    s = aligned.size
    corners = np.array([[-0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5], [s - 0.5, -0.5]])
    np.testing.assert_allclose(aligned.to_original(corners), aligned.quad, atol=1e-9)
    np.testing.assert_allclose(aligned.quad, ffhq_quad(astronaut_face.points))
    np.testing.assert_allclose(aligned.points, aligned.to_aligned(astronaut_face.points))
    assert aligned.source_shape == (512, 512)


@pytest.mark.parametrize("name, shape, scale, offset, cfg", [
    ("crop", (512, 512), 1, (0, 0), AlignConfig()),
    ("shrink", (2048, 1800), 4, (0, 0), AlignConfig(output_size=128)),
    ("pad", (300, 300), 1, (-150, -60), AlignConfig()),
    ("shrink+pad", (1400, 1300), 4, (-500, -200), AlignConfig(output_size=100)),
    ("no-supersampling", (512, 512), 1, (0, 0), AlignConfig(output_size=64, transform_size=64, min_face_size=1)),
])
def test_aligned_pixels_follow_the_returned_matrix(astronaut_face, name, shape, scale, offset, cfg):
    """On a smooth pattern, every aligned pixel equals the pattern at matrix @ pixel (all code paths)."""
    points = astronaut_face.points * scale + np.array(offset, dtype=np.float64)
    h, w = shape
    aligned = align_face(render_field(h, w), points, cfg)
    s = aligned.size
    ay, ax = np.mgrid[:s, :s].astype(np.float64)
    orig = aligned.to_original(np.stack([ax.ravel(), ay.ravel()], axis=-1))
    side = np.hypot(*(aligned.quad[3] - aligned.quad[0]))
    margin = 0.12 * side  # padding blurs the photo's outer rim, by design
    inside = ((orig >= margin) & (orig <= np.array([w - 1, h - 1]) - margin)).all(axis=1)
    assert inside.mean() > 0.3
    expected = np.clip(smooth_field(orig[:, 0], orig[:, 1]), 0, 255)[inside]
    err = np.abs(aligned.image.reshape(-1, 3).astype(np.float64)[inside] - expected)
    assert err.mean() < 0.8 and err.max() < 3.0, (name, err.mean(), err.max())


def test_padding_fills_outside_the_photo(astronaut_face):
    points = astronaut_face.points - np.array([150.0, 60.0])  # face near the top-left corner
    img = render_field(300, 300)
    padded = align_face(img, points).image
    black = align_face(img, points, AlignConfig(enable_padding=False)).image
    assert (black[:20, :20] == 0).all()  # top-left of the crop is outside the photo
    assert padded[:20, :20].mean() > 20  # reflected and blurred photo content instead
    np.testing.assert_allclose(padded[300:400, 300:400].astype(float), black[300:400, 300:400], atol=2)


def test_paste_back_reproduces_the_face(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face)
    out = paste_back(astronaut, aligned.image, aligned)
    x0, y0, x1, y1 = astronaut_face.box.astype(int)
    diff = out[y0:y1, x0:x1].astype(np.float64) - astronaut[y0:y1, x0:x1]
    psnr = 10 * np.log10(255.0 ** 2 / np.mean(diff ** 2))
    assert np.abs(diff).mean() < 5.0 and psnr > 30.0
    lo, hi = np.floor(aligned.quad.min(0)).astype(int), np.ceil(aligned.quad.max(0)).astype(int)
    outside = np.ones(astronaut.shape[:2], bool)
    outside[max(lo[1], 0):hi[1] + 2, max(lo[0], 0):hi[0] + 2] = False
    np.testing.assert_array_equal(out[outside], astronaut[outside])


def test_paste_back_is_exact_on_a_smooth_pattern(astronaut_face):
    img = render_field(512, 512)
    aligned = align_face(img, astronaut_face)
    out = paste_back(img, aligned.image, aligned, feather=0.0)
    x0, y0, x1, y1 = astronaut_face.box.astype(int)
    assert np.abs(out[y0:y1, x0:x1].astype(float) - img[y0:y1, x0:x1]).max() <= 2


def test_paste_back_of_a_higher_resolution_render(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face)
    render_1024 = np.asarray(Image.fromarray(aligned.image).resize((1024, 1024), Image.Resampling.LANCZOS))
    out = paste_back(astronaut, render_1024, aligned)
    x0, y0, x1, y1 = astronaut_face.box.astype(int)
    assert np.abs(out[y0:y1, x0:x1].astype(float) - astronaut[y0:y1, x0:x1]).mean() < 5.0


def test_paste_back_feather_and_mask(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face)
    red = np.zeros((512, 512, 3), np.uint8)
    red[..., 0] = 255
    out = paste_back(astronaut, red, aligned, feather=0.1)
    centre = aligned.to_original(np.array([[255.5, 255.5]]))[0].round().astype(int)
    assert tuple(out[centre[1], centre[0]]) == (255, 0, 0)  # fully replaced inside
    ex, ey = aligned.to_original(np.array([[5.0, 255.5]]))[0].round().astype(int)  # in the feather ramp
    green = float(astronaut[ey, ex, 1])
    assert green > 100  # light background there, so the blend is measurable
    assert 0.5 * green < out[ey, ex, 1] < green - 5  # partly blended towards red's green = 0
    untouched = paste_back(astronaut, red, aligned, mask=np.zeros((512, 512)))
    np.testing.assert_array_equal(untouched, astronaut)


def test_paste_back_bad_inputs(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face)
    with pytest.raises(InputError, match="same photo"):
        paste_back(astronaut[:300], aligned.image, aligned)
    with pytest.raises(InputError, match="square uint8"):
        paste_back(astronaut, aligned.image[:, :500], aligned)
    with pytest.raises(InputError, match="feather"):
        paste_back(astronaut, aligned.image, aligned, feather=0.8)
    with pytest.raises(InputError, match="mask"):
        paste_back(astronaut, aligned.image, aligned, mask=np.ones((10, 10)))


def test_tiny_face_is_refused_with_a_clear_message(astronaut, astronaut_face, dlib_detector):
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.Resampling.LANCZOS))
    face = dlib_detector.detect(small)  # still detectable, but a ~85 px crop
    with pytest.raises(TinyFaceError, match="face too small: its crop is .* px wide.*min_face_size=128") as info:
        align_face(small, face)
    assert isinstance(info.value, InputError) and "\n" not in str(info.value)
    assert align_face(small, face, AlignConfig(min_face_size=64)).image.shape == (512, 512, 3)
    with pytest.raises(TinyFaceError):
        align_face(astronaut, astronaut_face.points * 0.3)


def test_too_small_to_detect_is_no_face(astronaut, dlib_detector):
    thumb = np.asarray(Image.fromarray(astronaut).resize((96, 96), Image.Resampling.LANCZOS))
    with pytest.raises(NoFaceError, match="no face found in the 96x96 image"):
        align_photo(thumb, detector=dlib_detector)


def test_bad_landmarks_and_config(astronaut, astronaut_face):
    with pytest.raises(InputError, match=r"\[68, 2\]"):
        align_face(astronaut, np.zeros((5, 2)))
    with pytest.raises(InputError, match="degenerate"):
        align_face(astronaut, np.full((68, 2), 100.0))
    with pytest.raises(InputError, match="transform_size"):
        align_face(astronaut, astronaut_face, AlignConfig(output_size=512, transform_size=256))
    with pytest.raises(InputError, match="outside the image"):
        align_face(astronaut, astronaut_face.points + 5000, AlignConfig(min_face_size=1))


def test_align_photo_from_exif_rotated_file(tmp_path, astronaut, astronaut_face, dlib_detector):
    stored = Image.fromarray(astronaut).transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to display
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    aligned = align_photo(path, detector=dlib_detector)
    assert aligned.source_shape == (512, 512)
    np.testing.assert_allclose(aligned.quad, ffhq_quad(astronaut_face.points), atol=4)
    expected = canonical_positions(astronaut_face.points, 512)
    again = dlib_detector.detect(aligned.image)
    np.testing.assert_allclose(again.eye_centers[0], expected["eye_left"], atol=6)


def test_align_photo_on_rgba_and_16bit_files(tmp_path, astronaut, astronaut_face, dlib_detector):
    rgba = np.dstack([astronaut, np.full((512, 512), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    gray16 = np.asarray(Image.fromarray(astronaut).convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    for name in ("a.png", "g16.png"):
        aligned = align_photo(tmp_path / name, detector=dlib_detector)
        assert aligned.image.shape == (512, 512, 3)
        np.testing.assert_allclose(aligned.quad, ffhq_quad(astronaut_face.points), atol=4)


def test_apply_affine_shapes():
    m = np.array([[2.0, 0, 1], [0, 3.0, -1], [0, 0, 1]])
    np.testing.assert_allclose(apply_affine(m, np.array([1.0, 1.0])), [[3.0, 2.0]])
    assert apply_affine(m, np.zeros((7, 2))).shape == (7, 2)


def test_transform_size_default_adapts_and_matches_ffhq_supersampling(astronaut, astronaut_face):
    cfg = AlignConfig(output_size=512)
    assert [cfg.resolved_transform_size(s) for s in (100, 600, 1500, 5000)] == [512, 1024, 1536, 2048]
    assert AlignConfig(output_size=512, transform_size=4096).resolved_transform_size(100) == 4096
    fast = align_face(astronaut, astronaut_face, cfg).image.astype(np.float64)
    ffhq = align_face(astronaut, astronaut_face, AlignConfig(output_size=512, transform_size=2048)).image
    assert np.abs(fast - ffhq).mean() < 0.5


def test_face_prep_benchmark_smoke():
    from nerffs.bench.face_prep import run

    result = run(repeats=1, output_sizes=(256,))
    assert result["image_size"] == [512, 512] and result["faces"] >= 1
    assert all(result[k] > 0 for k in ("load_models_s", "detect_ms", "align_256_ms", "paste_back_256_ms"))
