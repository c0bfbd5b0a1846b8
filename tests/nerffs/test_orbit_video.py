"""Orbit videos as a library call (nerffs.orbit_video, behind scripts.render_views): the generator mode renders
the seeded identity along the orbit, the stills are exactly the views, and the request picks its source."""
import numpy as np
import pytest
from PIL import Image

from nerffs import orbit_video
from nerffs.orbit_video import OrbitVideoRequest, render_orbit_video
from nerffs.render.video import read_video


def _stills(directory):
    return [np.asarray(Image.open(p)) for p in sorted(directory.iterdir())]


def test_generator_orbit_writes_the_views_and_their_stills(tmp_path):
    req = OrbitVideoRequest(out=tmp_path / "a.mp4", frames=3, batch=2, stills=tmp_path / "a")
    assert render_orbit_video(req) == req.out
    frames, fps = read_video(req.out)
    stills = _stills(tmp_path / "a")
    assert frames.shape == (3, 64, 64, 3) and fps == 25
    assert [p.name for p in sorted((tmp_path / "a").iterdir())] == ["view_000.png", "view_001.png", "view_002.png"]
    assert all(s.shape == (64, 64, 3) for s in stills) and np.any(stills[0] != stills[1])  # the camera moves
    # the seed fixes the identity (random weights and latent): same seed, same views; another seed, others
    render_orbit_video(OrbitVideoRequest(out=tmp_path / "b.mp4", frames=3, batch=3, stills=tmp_path / "b"))
    render_orbit_video(OrbitVideoRequest(out=tmp_path / "c.mp4", frames=3, seed=1, stills=tmp_path / "c"))
    assert all(np.array_equal(x, y) for x, y in zip(stills, _stills(tmp_path / "b")))
    assert not np.array_equal(stills[0], _stills(tmp_path / "c")[0])


@pytest.mark.parametrize("fields, chosen", [({}, "generator_orbit"), ({"image": "p.jpg"}, "photo_orbit"),
                                             ({"image": "p.jpg", "talking": ("p.jpg", "a.wav")}, "talking_orbit")])
def test_the_request_picks_its_source(monkeypatch, tmp_path, fields, chosen):
    for name in ("generator_orbit", "photo_orbit", "talking_orbit"):
        monkeypatch.setattr(orbit_video, name, lambda req, name=name: name)
    assert render_orbit_video(OrbitVideoRequest(out=tmp_path / "x.mp4", **fields)) == chosen


def test_model_set_defaults_to_the_weights_then_auto(tmp_path):
    assert OrbitVideoRequest(out=tmp_path).model_set == "auto"
    assert OrbitVideoRequest(out=tmp_path, weights=tmp_path / "w").model_set == str(tmp_path / "w")
    assert OrbitVideoRequest(out=tmp_path, weights=tmp_path / "w", models="offline").model_set == "offline"
