"""Pipeline config: presets and flat overrides routed to their stage."""
import pytest

from nerffs.config import get_config


def test_flat_overrides_reach_their_stage_and_leave_the_original():
    base = get_config("official")
    cfg = base.replace(exp_scale=1.2, ref_momentum=0.3, mask_window=5, camera="orbit", source="sample")
    assert (cfg.audio.exp_scale, cfg.audio.ref_momentum, cfg.loop.mask_window) == (1.2, 0.3, 5)
    assert cfg.render.camera == "orbit" and cfg.identity.source == "sample"
    assert (base.audio.exp_scale, base.loop.mask_window, base.render.camera) == (1.5, 7, "input")


def test_paper_defaults():
    cfg = get_config("official")
    assert (cfg.audio.ref_momentum, cfg.audio.exp_scale, cfg.loop.mask_window) == (0.5, 1.5, 7)
    assert (cfg.fit.rigid_iters, cfg.fit.nonrigid_iters, cfg.loop.vertex_stride) == (1000, 500, 4)


def test_errors():
    with pytest.raises(ValueError, match="unknown pipeline option 'nope'"):
        get_config("official").replace(nope=1)
    with pytest.raises(ValueError, match="unknown pipeline preset"):
        get_config("fast-ish")
    with pytest.raises(ValueError, match="needs a driving clip"):
        get_config("official").replace(expression="driving")
    cfg = get_config("official").replace(expression="driving", camera="driving:clip.mp4")
    assert cfg.render.expression == "driving"
