"""SyncNet LSE-D / LSE-C: the reference parameter table loads strictly, the front end is the reference one, and
the scores can fail: planted audio-video offsets are recovered and a mismatched pairing scores worse.

The end-to-end tests (marked ``slow``: ~10 s on 2 CPU cores, mostly fitting the heads) use a seeded random
network whose two last linear layers are fitted here (least squares) so that lip and audio embeddings agree on a
synthetic training clip: a 300 Hz tone whose loudness changes every video frame, and frames whose "mouth" height
encodes the same per-frame level. The training pairs are assembled by this file (frames ``i..i+4`` with MFCC
columns ``4i..4i+19``), not by the code under test, so a wrong 100 Hz / 25 fps alignment, channel order or
offset search in ``nerffs.metrics.syncnet`` shows up on fresh clips.
"""
import numpy as np
import pytest
import python_speech_features
import torch
import torch.nn.functional as F

from nerffs.errors import CheckpointError, InputError, NoFaceError, WeightsMissingError
from nerffs.metrics.syncnet import (SyncNet, crop_face, face_crops, lse_scores, load_syncnet, mfcc_features,
                                    pcm16, smooth_boxes, syncnet_or_none)

# Parameter table of the reference model definition (syncnet_python SyncNetModel.py): conv weight shapes by
# Sequential index; each conv is followed by its BatchNorm at index + 1.
AUDIO_CONVS = {0: (64, 1, 3, 3), 4: (192, 64, 3, 3), 8: (384, 192, 3, 3), 11: (256, 384, 3, 3),
               14: (256, 256, 3, 3), 18: (512, 256, 5, 4)}
LIP_CONVS = {0: (96, 3, 5, 7, 7), 4: (256, 96, 1, 5, 5), 8: (256, 256, 1, 3, 3), 11: (256, 256, 1, 3, 3),
             14: (256, 256, 1, 3, 3), 18: (512, 256, 1, 6, 6)}
HEAD = {0: (512, 512), 3: (1024, 512)}  # Linear layers; BatchNorm1d(512) at index 1


def reference_shapes(counters: bool) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in a state dict of the reference model."""
    out: dict[str, tuple[int, ...]] = {}

    def batch_norm(prefix: str, channels: int) -> None:
        for field in ("weight", "bias", "running_mean", "running_var"):
            out[f"{prefix}.{field}"] = (channels,)
        if counters:
            out[f"{prefix}.num_batches_tracked"] = ()

    for trunk, convs in (("netcnnaud", AUDIO_CONVS), ("netcnnlip", LIP_CONVS)):
        for i, shape in convs.items():
            out[f"{trunk}.{i}.weight"], out[f"{trunk}.{i}.bias"] = shape, shape[:1]
            batch_norm(f"{trunk}.{i + 1}", shape[0])
    for head in ("netfcaud", "netfclip"):
        for i, shape in HEAD.items():
            out[f"{head}.{i}.weight"], out[f"{head}.{i}.bias"] = shape, shape[:1]
        batch_norm(f"{head}.1", 512)
    return out


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randint(0, 100, s, generator=g) if k.endswith("num_batches_tracked")
            else torch.rand(s, generator=g) for k, s in shapes.items()}


# ---- weights -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("counters", [True, False], ids=["with_num_batches_tracked", "without"])
def test_reference_state_dict_loads_strictly(tmp_path, counters):
    shapes = reference_shapes(counters)
    assert len(shapes) == 88 + 14 * counters
    state = random_state(shapes)
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path)  # the reference container: a plain state dict, read back with torch.load
    loaded = load_syncnet(path).state_dict()
    assert {k for k in loaded if not k.endswith("num_batches_tracked")} == \
        {k for k in shapes if not k.endswith("num_batches_tracked")}
    for name, value in state.items():
        assert torch.equal(loaded[name], value), name


@pytest.mark.parametrize("damage", ["missing", "unexpected", "shape"])
def test_mismatched_state_dict_is_refused(tmp_path, damage):
    state = random_state(reference_shapes(counters=False))
    if damage == "missing":
        del state["netcnnlip.19.running_var"]
    elif damage == "unexpected":
        state["netcnnlip.21.weight"] = torch.zeros(1)
    else:
        state["netfcaud.3.weight"] = torch.zeros(512, 512)
    torch.save(state, tmp_path / "syncnet_v2.model")
    with pytest.raises(CheckpointError, match=damage if damage != "shape" else "wrong shape"):
        load_syncnet(tmp_path / "syncnet_v2.model")


def test_pickled_module_is_not_executed(tmp_path):
    torch.save(SyncNet(), tmp_path / "syncnet_v2.model")  # a whole pickled module needs code to load
    with pytest.raises(CheckpointError, match="unsafe"):
        load_syncnet(tmp_path / "syncnet_v2.model")


def test_missing_weights_skip(tmp_path):
    with pytest.raises(WeightsMissingError, match="LSE-D/LSE-C are skipped"):
        load_syncnet(tmp_path / "nope.model")
    assert syncnet_or_none(tmp_path / "nope.model") is None


# ---- audio front end ---------------------------------------------------------------------------------------
def test_mfcc_is_python_speech_features_on_int16():
    assert pcm16(np.array([0.5, -1.0, 1.0, 2.5 / 32768, -0.25], np.float32)).tolist() == [16384, -32768, 32767, 2,
                                                                                          -8192]
    wave = (0.3 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    ours = mfcc_features(wave, 16000)
    expected = python_speech_features.mfcc(np.clip(np.rint(wave * 32768.0), -32768, 32767).astype(np.int16), 16000)
    assert ours.shape == (13, 99)  # 25 frames of 640 samples -> 4 * 25 - 1 columns at 100 Hz
    np.testing.assert_array_equal(ours, expected.T.astype(np.float32))
    np.testing.assert_array_equal(mfcc_features(pcm16(wave), 16000), ours)  # int16 input is used as it is


# ---- synthetic talking clips ---------------------------------------------------------------------------------
def tone(levels: np.ndarray) -> np.ndarray:
    """A 300 Hz tone whose loudness is set by one level in [0, 1] per 40 ms video frame."""
    amplitude = 10.0 ** (-2.5 + 2.0 * np.repeat(levels, 640))
    return (np.sin(2 * np.pi * 300.0 * np.arange(amplitude.size) / 16000) * amplitude).astype(np.float32)


def mouth_frames(levels: np.ndarray) -> np.ndarray:
    """RGB frames [T, 224, 224, 3]: a dark red mouth whose height follows the level, on a skin-coloured face."""
    frames = np.empty((len(levels), 224, 224, 3), np.uint8)
    frames[:] = (200, 150, 120)
    for t, level in enumerate(levels):
        h = int(8 + 70 * level)
        frames[t, 150 - h // 2:150 + h // 2, 62:162] = (120, 30, 40)
    return frames


def reference_clip(frames_rgb: np.ndarray) -> torch.Tensor:
    """[1, 3, T, 224, 224] float: cv2 (BGR) frames stacked on a last time axis, then moved to [1, C, T, H, W]."""
    bgr = [f[..., ::-1] for f in frames_rgb]
    return torch.from_numpy(np.stack(bgr, axis=3)[None].transpose(0, 3, 4, 1, 2).astype(float)).float()


def lip_batches(clip: torch.Tensor, count: int, size: int = 19):
    """Batches [b, 3, 5, 224, 224] of windows 0..count-1 (window i: frames i..i+4)."""
    for start in range(0, count, size):
        yield torch.cat([clip[:, :, i:i + 5] for i in range(start, min(count, start + size))], 0)


def reference_mfcc_batch(wave: np.ndarray, count: int) -> torch.Tensor:
    """[count, 1, 13, 20]: MFCC columns 4i..4i+19 for window i."""
    cc = python_speech_features.mfcc(pcm16(wave), 16000).T[None, None].astype(float)
    return torch.cat([torch.from_numpy(cc[:, :, :, 4 * i:4 * i + 20]).float() for i in range(count)], 0)


def reference_scores(model: SyncNet, frames_rgb: np.ndarray, wave: np.ndarray, vshift: int = 15):
    """(mean distance per offset, offset, LSE-D, LSE-C) following the reference steps one by one."""
    count = min(len(frames_rgb), len(wave) // 640) - 5
    with torch.no_grad():
        lip = torch.cat([model.forward_lip(b) for b in lip_batches(reference_clip(frames_rgb), count)])
        aud = model.forward_aud(reference_mfcc_batch(wave, count))
    padded = F.pad(aud, (0, 0, vshift, vshift))
    rows = [F.pairwise_distance(lip[[i]].repeat(2 * vshift + 1, 1), padded[i:i + 2 * vshift + 1])
            for i in range(count)]
    mdist = torch.stack(rows, 1).mean(1)
    minval, minidx = torch.min(mdist, 0)
    return mdist.numpy(), vshift - int(minidx), float(minval), float(torch.median(mdist) - minval)


@pytest.fixture(scope="module")
def fitted_model() -> SyncNet:
    """Seeded random SyncNet whose last linear layers make lip and audio embeddings agree on a training clip.

    Audio head: the top 8 principal components of the audio trunk features, whitened, plus a constant
    coordinate (so zero-padded rows are far from every embedding). Lip head: ridge regression onto those.
    """
    torch.manual_seed(0)
    model = SyncNet().eval()
    levels = np.random.default_rng(1).uniform(size=100)
    count, rank = len(levels) - 5, 8
    with torch.no_grad():
        lip = torch.cat([model.netfclip[:3](model.netcnnlip(b).flatten(1))
                         for b in lip_batches(reference_clip(mouth_frames(levels)), count)]).double()
        aud = model.netfcaud[:3](model.netcnnaud(reference_mfcc_batch(tone(levels), count)).flatten(1)).double()
        mean = aud.mean(0)
        _, sv, vh = torch.linalg.svd(aud - mean, full_matrices=False)
        scale = sv[:rank] / np.sqrt(count - 1)
        w_aud, b_aud = torch.zeros(1024, 512, dtype=torch.float64), torch.zeros(1024, dtype=torch.float64)
        w_aud[:rank], b_aud[:rank] = vh[:rank] / scale[:, None], -(vh[:rank] @ mean) / scale
        b_aud[rank] = 3 * rank ** 0.5
        x = torch.cat([lip, torch.ones(count, 1, dtype=torch.float64)], 1)
        ridge = 1e-2 * x.pow(2).sum() / x.shape[1] * torch.eye(x.shape[1], dtype=torch.float64)
        w_lip = torch.linalg.solve(x.T @ x + ridge, x.T @ (aud @ w_aud.T + b_aud))
        model.netfcaud[3].weight.copy_(w_aud)
        model.netfcaud[3].bias.copy_(b_aud)
        model.netfclip[3].weight.copy_(w_lip[:-1].T)
        model.netfclip[3].bias.copy_(w_lip[-1])
    return model


@pytest.mark.slow
def test_matches_reference_steps(fitted_model):
    levels = np.random.default_rng(5).uniform(size=16)
    frames, wave = mouth_frames(levels), tone(levels)
    wave = wave[:len(wave) - 100]  # audio a little shorter than the video: floor(L / 640) frames count
    ours = lse_scores(fitted_model, frames, wave, 16000, batch_size=7)
    mdist, offset, lse_d, lse_c = reference_scores(fitted_model, frames, wave)
    np.testing.assert_allclose(ours.dists, mdist, rtol=1e-5, atol=1e-5)
    assert ours.offset == offset
    assert ours.lse_d == pytest.approx(lse_d, rel=1e-5) and ours.lse_c == pytest.approx(lse_c, rel=1e-4, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("lag", [3, -2])
def test_planted_offset_is_recovered(fitted_model, lag):
    """Frame t shows the level the audio had at frame t - lag (lag > 0: audio ahead): offset == lag."""
    levels = np.random.default_rng(10 + lag).uniform(size=50)
    audio_levels, video_levels = levels[10:40], levels[10 - lag:40 - lag]
    score = lse_scores(fitted_model, mouth_frames(video_levels), tone(audio_levels), 16000)
    assert score.offset == lag
    assert score.dists.argmin() == 15 - lag


@pytest.mark.slow
def test_mismatched_pairing_scores_worse(fitted_model):
    rng = np.random.default_rng(99)
    levels, other = rng.uniform(size=30), rng.uniform(size=30)
    frames = mouth_frames(levels)
    true = lse_scores(fitted_model, frames, tone(levels), 16000)
    wrong = lse_scores(fitted_model, frames, tone(other), 16000)
    assert true.offset == 0
    assert true.lse_d < wrong.lse_d and true.lse_c > wrong.lse_c


# ---- face crops ---------------------------------------------------------------------------------------------
class FixedBoxes:
    """Detector stand-in: one box per call, in order; None means no face."""

    def __init__(self, boxes):
        self.boxes = iter(boxes)

    def detect(self, frame):
        box = next(self.boxes)
        if box is None:
            raise NoFaceError("no face")
        return type("Face", (), {"box": np.asarray(box, dtype=np.float64)})()


def test_crop_geometry():
    frame = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    # box 80 wide, 100 high: half size 50, centre (140, 130) -> rows [80, 220), columns [70, 210)
    crops = face_crops(np.stack([frame] * 7), FixedBoxes([(100, 80, 180, 180)] * 7), size=140)
    for crop in crops:
        np.testing.assert_array_equal(crop, frame[80:220, 70:210])
    # near the corner: half size 20, centre (20, 20) -> rows [0, 56), columns [-8, 48): 8 columns of padding (110)
    corner = crop_face(frame, 20.0, 20.0, 20.0, size=56)
    assert (corner[:, :8] == 110).all()
    np.testing.assert_array_equal(corner[:, 8:], frame[0:56, 0:48])


def test_box_smoothing_and_missing_face():
    boxes = np.tile([100.0, 80.0, 180.0, 180.0], (20, 1))
    boxes[10] += 30  # one jumpy detection is removed by the 13-frame median filter
    np.testing.assert_array_equal(smooth_boxes(boxes), np.tile([140.0, 130.0, 50.0], (20, 1)))
    frames = np.zeros((7, 64, 64, 3), np.uint8)
    assert face_crops(frames, FixedBoxes([(0, 0, 10, 10)] * 3 + [None] + [(0, 0, 10, 10)] * 3)) is None
    with pytest.raises(InputError, match="at least 7 frames"):
        face_crops(frames[:6], FixedBoxes([(0, 0, 10, 10)] * 6))


@pytest.mark.weights("syncnet/syncnet_v2.model")
def test_official_weights_load():
    assert isinstance(load_syncnet(), SyncNet)
