"""One preset mechanism: every preset family is a Registry, keeps its names, and fails the same way."""
import pytest

from nerffs.audio.audio2pose import AUDIO2POSE_PRESETS, Audio2PoseConfig
from nerffs.config import PRESETS as PIPELINE_PRESETS
from nerffs.config import get_config
from nerffs.face3d.fit import FIT_PRESETS, FitConfig
from nerffs.inversion.config import PRESETS as INVERSION_PRESETS
from nerffs.inversion.config import get_preset as inversion_preset
from nerffs.lipaint.train import PRESETS as TRAINING_PRESETS
from nerffs.lipaint.train import TrainConfig
from stylenerf.config import PRESETS as GENERATOR_PRESETS
from stylenerf.config import get_preset as generator_preset
from torch_utils.registry import Registry


def test_register_get_names_and_fresh_values():
    reg = Registry[list]("toy", {"empty": list})

    @reg.register("one")
    def _one() -> list:
        return [1]

    assert reg.names() == ("empty", "one") and list(reg) == ["empty", "one"] and len(reg) == 2
    assert "one" in reg and "two" not in reg and ["unhashable"] not in reg
    first = reg.get("one")
    first.append(2)
    assert reg.get("one") == [1]  # each get builds anew: changing a value never changes the preset
    with pytest.raises(ValueError, match="toy preset 'one' is already registered"):
        reg.register("one", list)


def test_unknown_name_is_one_line_listing_the_choices():
    reg = Registry[int]("toy", {"a": int, "b": int, "c": int})
    with pytest.raises(ValueError) as info:
        reg.get("x")
    assert str(info.value) == "unknown toy preset 'x'; choose one of a, b, c"
    with pytest.raises(ValueError, match="unknown toy preset"):
        reg.get(["x"])  # unhashable (e.g. read from JSON): the same message, not a TypeError


@pytest.mark.parametrize("registry, kind, names", [
    (PIPELINE_PRESETS, "pipeline", ("official", "smoke", "offline")),
    (INVERSION_PRESETS, "inversion", ("official", "fast", "smoke")),
    (GENERATOR_PRESETS, "generator", ("ffhq256", "ffhq512", "ffhq1024", "tiny")),
    (TRAINING_PRESETS, "training", ("official", "smoke")),
    (FIT_PRESETS, "FitConfig", ("official", "fast")),
    (AUDIO2POSE_PRESETS, "Audio2PoseConfig", ("official", "tiny")),
])
def test_every_preset_family_goes_through_a_registry(registry, kind, names):
    assert isinstance(registry, Registry) and registry.kind == kind and registry.names() == names
    with pytest.raises(ValueError, match=f"unknown {kind} preset 'nope'; choose one of {', '.join(names)}"):
        registry.get("nope")


def test_preset_values_are_unchanged():
    assert get_config("official") == PIPELINE_PRESETS.get("official")
    smoke, offline = get_config("smoke"), get_config("offline")
    assert (smoke.loop.blend_size, smoke.loop.batch_size, smoke.identity.source) == (128, 8, "sample")
    assert (offline.audio.blink, offline.motion.pose, offline.loop.batch_size) == ("random", "audio", 4)
    assert smoke.fit == offline.fit == FitConfig.preset("fast")
    fast = FitConfig.preset("fast")
    assert (fast.rigid_iters, fast.nonrigid_iters, fast.photometric) == (200, 150, False)
    assert FitConfig.preset("official") == FitConfig()
    inv = inversion_preset("fast")
    assert (inv.projection.num_steps, inv.tuning.num_steps, inv.tuning.lpips_resolution) == (300, 400, 256)
    assert inversion_preset("smoke").allow_random_lpips
    assert generator_preset("ffhq1024").img_resolution == 1024 and generator_preset("tiny").w_dim == 32
    assert Audio2PoseConfig.preset("tiny").seq_len == 8
    train = TrainConfig.preset("smoke", iterations=3)
    assert (train.models, train.discriminator, train.batch, train.iterations, train.device) == \
        ("smoke", "random", 2, 3, "cpu")
    assert TrainConfig.preset("official") == TrainConfig()
