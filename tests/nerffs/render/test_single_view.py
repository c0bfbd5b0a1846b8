"""One view of an identity (the app's live view): it is exactly the frame the same fixed camera gives in a video's
camera path, and the app's degree sliders map onto the camera spec the video uses."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nerffs.app_support import camera_spec, preview_identity
from nerffs.examples import example_photo
from nerffs.models import smoke_models
from nerffs.pipeline import TalkingHeadPipeline
from nerffs.render.camera_spec import CameraSpec
from nerffs.render.cameras import camera_path
from nerffs.render.views import render_view, render_views
from stylenerf.camera import frontal_camera


@pytest.fixture(scope="module")
def identity():
    g = smoke_models(seed=0).talking.generator
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        ws = g.mapping(torch.randn(1, g.z_dim, generator=gen), truncation_psi=0.7)
    bg = torch.randn(1, g.cfg.nerf.z_dim_bg, generator=gen)
    base = camera_path(CameraSpec.parse("fixed:yaw=0.05,pitch=0.02"), frontal_camera(1), 1)  # a photo's camera
    return g, ws, bg, base


def _video_view(g, ws, bg, base, spec: str) -> np.ndarray:
    """Frame 0's camera of a 3-frame video with camera ``spec``, rendered like the video's views."""
    cams = camera_path(CameraSpec.parse(spec), base, 3)
    return next(render_views(g, ws, cams[:1], bg, batch_size=1, show_progress=False))


def test_render_view_is_the_video_camera(identity):
    g, ws, bg, base = identity
    view = render_view(g, ws, base, bg, yaw=0.2, pitch=-0.1)
    assert view.dtype == np.uint8 and view.shape == (g.img_resolution, g.img_resolution, 3)
    np.testing.assert_array_equal(view, _video_view(g, ws, bg, base, "fixed:yaw=0.2,pitch=-0.1"))
    np.testing.assert_array_equal(render_view(g, ws, base, bg), _video_view(g, ws, bg, base, "input"))


@pytest.mark.parametrize("models", ["smoke", "offline"])
def test_prepared_identity_views_in_degrees_match_the_app_camera_spec(models, tmp_path):
    """Offline: the photo's fitted field, so turning the camera visibly turns the face (the smoke field is empty)."""
    pipe = TalkingHeadPipeline.from_pretrained(models)
    prepared = preview_identity(pipe, example_photo(), tmp_path, num_views=0, show_progress=False).identity
    ws, bg, talking, camera = pipe.identity(pipe.align(example_photo())[1], 0)
    torch.testing.assert_close(prepared.camera, camera)  # the photo's camera, as the video uses it
    view = prepared.view(12, -6)
    spec = camera_spec("fixed", 12, -6)  # what 'Use this view for the video' makes the camera
    np.testing.assert_array_equal(view, _video_view(prepared.generator, ws, bg, camera, spec))
    if models == "offline":
        assert np.abs(view.astype(int) - prepared.view(0, 0).astype(int)).mean() > 2  # the sliders turn the face
    assert not list(tmp_path.iterdir())  # no orbit asked for, nothing written
