"""The offline model set: per-face cache of the fit, model-set choice, and one whole run (slow)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from nerffs.examples import example_photo
from nerffs.talking.cache import FaceCache


def test_portrait_fit_is_cached_and_a_damaged_entry_is_refitted(offline, aligned, tmp_path, caplog):
    cache = FaceCache(tmp_path)
    first = offline.portrait(aligned, cache)
    entries = sorted(tmp_path.glob("portrait-*.safetensors"))
    assert len(entries) == 1
    with caplog.at_level(logging.INFO, logger="nerffs.offline.models"):
        again = offline.portrait(aligned, cache)
    assert "reused the cached fit" in caplog.text
    for name, value in first.arrays().items():
        assert np.array_equal(value, again.arrays()[name]), name
    entries[0].write_bytes(entries[0].read_bytes()[:-100])  # truncated file: checksum fails, refit
    caplog.clear()
    with caplog.at_level(logging.INFO):
        third = offline.portrait(aligned, cache)
    assert "damaged" in caplog.text and np.array_equal(third.depth, first.depth)


def test_fingerprint_changes_with_any_setting(offline):
    import dataclasses

    from nerffs.offline.models import OfflineConfig, OfflineModels

    other = OfflineModels(dataclasses.replace(OfflineConfig(), subdivisions=1))
    assert other.fingerprint() != offline.fingerprint() and OfflineModels().fingerprint() == offline.fingerprint()


def test_auto_falls_back_to_the_offline_models(monkeypatch, tmp_path, caplog):
    from nerffs.pipeline import TalkingHeadPipeline

    monkeypatch.setenv("NERFFS_WEIGHTS", str(tmp_path))  # an empty weights directory
    with caplog.at_level(logging.WARNING):
        pipe = TalkingHeadPipeline.from_pretrained("auto")
    assert pipe.models.source == "offline" and "OFFLINE demo models instead" in caplog.text
    assert pipe.models.resolution == 512 and pipe.config.audio.blink == "random"


@pytest.mark.slow
def test_offline_run_shows_the_face_speaking(tmp_path):
    """make demo's job on a short clip: the photo's identity, a face in every frame, the mouth open while
    speaking and closed in the silence after it, metadata and contact sheet (loose thresholds)."""
    from nerffs.audio import load_audio
    from nerffs.audio.speech import synthesize_speech
    from nerffs.bench.offline import measure_video, read_frames
    from nerffs.metrics.identity import DlibIdentity
    from nerffs.pipeline import TalkingHeadPipeline
    from nerffs.preprocess.image import load_image
    from nerffs.preprocess.landmarks import DlibLandmarks
    from nerffs.render.video import read_metadata

    import soundfile

    speech = synthesize_speech(tmp_path / "s.wav", text="Hello papa, how are you?")
    data, rate = soundfile.read(str(speech), dtype="float32")
    soundfile.write(str(speech), np.concatenate([data, np.zeros(int(0.8 * rate), np.float32)]), rate)
    pipe = TalkingHeadPipeline.from_pretrained("offline")
    out = pipe(example_photo(), speech, tmp_path / "talk.mp4", transcript="Hello papa, how are you?",
               show_progress=False, preview_sheet=True)
    frames = read_frames(out.video)
    detector = DlibLandmarks().load()
    figures = measure_video(load_image(example_photo()), frames, load_audio(speech, pipe.config.audio), 16000,
                            25.0, detector, DlibIdentity(detector))
    assert figures["face_detected"] >= 0.9 and figures["dlib_id_l2"] < 0.6, json.dumps(figures)
    assert figures["opening_speech"] > 2 * figures["opening_silent"], json.dumps(figures)
    assert figures["lipsync_r"] > 0.3 and abs(figures["lipsync_lag"]) <= 3, json.dumps(figures)
    assert "offline demo models" in read_metadata(out.video)["comment"]
    assert (tmp_path / "talk_sheet.png").is_file()


def test_head_motion_turns_face_and_hair_and_pins_the_body(personal):
    """With head motion by deformation the reference has a head group (hair, from the person mask above the
    chin) that turns with the face about the neck pivot; the body and background points never move."""
    import torch

    from nerffs.talking.loop import FrameRenderer, LoopConfig, prepare_reference

    g = personal.generator
    cfg = LoopConfig(batch_size=2)
    ref = prepare_reference(personal, g.mapping(torch.zeros(1, g.z_dim)), torch.zeros(1, g.cfg.nerf.z_dim_bg), cfg,
                            head_motion=True)
    ctl = ref.controls
    assert ctl.n_head > 100 and ref.pivot is not None
    renderer = FrameRenderer(personal, ref, cfg)
    exp = ref.coeffs.exp.expand(3, -1)
    pose = torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.2, 0.05], [-0.2, 0.3, -0.15]])
    driven = renderer.driven_controls(exp, pose)
    body = slice(ctl.n_face + ctl.n_head, None)
    assert torch.equal(driven[:, body], ctl.ref[:, body].expand(3, -1, -1))
    assert torch.allclose(driven[0], renderer.driven_controls(exp[:1])[0], atol=1e-6)  # zero pose = no turn
    head = slice(ctl.n_face, ctl.n_face + ctl.n_head)
    for k in (1, 2):
        assert float((driven[k, :ctl.n_face] - driven[0, :ctl.n_face]).norm(dim=-1).mean()) > 2e-3
        assert float((driven[k, head] - driven[0, head]).norm(dim=-1).max()) > 1e-3


def test_region_of_change_equals_the_full_pass_on_the_offline_field(personal):
    import dataclasses

    import torch

    from stylenerf.camera import frontal_camera
    from nerffs.talking.loop import FrameRenderer, LoopConfig, prepare_reference

    g = personal.generator
    cfg = LoopConfig(batch_size=1, mask_window=3)
    ref = prepare_reference(personal, g.mapping(torch.zeros(1, g.z_dim)), torch.zeros(1, g.cfg.nerf.z_dim_bg), cfg)
    exp = ref.coeffs.exp.repeat(4, 1)
    exp[:, 0] += torch.tensor([0.0, 0.8, 0.3, -0.4])              # jaw
    exp[:, 1] += torch.tensor([0.0, 0.5, 0.9, 0.0])               # lips apart
    images = []
    for roc in (False, True):
        renderer = FrameRenderer(personal, ref, dataclasses.replace(cfg, region_of_change=roc))
        cam = frontal_camera(1)
        with torch.inference_mode():
            images.append(torch.cat([renderer.render(exp[i:i + 1], cam) for i in range(4)]))
    assert float((images[0] - images[1]).abs().max()) <= 1e-4
    assert float((images[0][1] - images[0][0]).abs().max()) > 0.1
