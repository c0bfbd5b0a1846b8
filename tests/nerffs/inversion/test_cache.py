"""Per-face cache and resume of ``invert``: hits skip optimisation, damage is recomputed, resume == uninterrupted."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from nerffs.errors import InputError
from nerffs.inversion import cache as cache_mod
from nerffs.inversion.config import InversionConfig, ProjectionConfig, TuningConfig
from nerffs.inversion.invert import invert
from stylenerf import Generator

PROJ_STEPS, TUNE_STEPS = 6, 5


class Interrupt(Exception):
    """Stands in for Ctrl-C / a killed job."""


def small_cfg(**overrides) -> InversionConfig:
    """6 projection + 5 tuning steps, checkpoints every 2 steps; LPIPS-alex in both stages for speed."""
    cfg = InversionConfig(projection=ProjectionConfig(num_steps=PROJ_STEPS, w_avg_samples=16, lpips_net="alex"),
                          tuning=TuningConfig(num_steps=TUNE_STEPS, learning_rate=3e-3, lpips_threshold=0.0),
                          allow_random_lpips=True, checkpoint_every=2)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


class Counter:
    """Step callback that counts optimisation steps and can interrupt at a given (stage, step)."""

    def __init__(self, stop_at: tuple[str, int] | None = None) -> None:
        self.steps: list[tuple[str, int]] = []
        self.stop_at = stop_at

    def __call__(self, stage: str, step: int, losses: dict[str, float]) -> None:
        self.steps.append((stage, step))
        if (stage, step) == self.stop_at:
            raise Interrupt


def run(generator, target, camera, metrics, cache_dir, counter=None, cfg=None, seed=0):
    return invert(generator, target, camera, cfg or small_cfg(), cache_dir=cache_dir, lpips=metrics,
                  rng=torch.Generator().manual_seed(seed), show_progress=False, callback=counter)


def assert_same(a, b):
    assert torch.equal(a.ws, b.ws) and torch.equal(a.bg_latent, b.bg_latent)
    assert a.generator_state.keys() == b.generator_state.keys()
    assert all(torch.equal(a.generator_state[k], b.generator_state[k]) for k in a.generator_state)
    assert a.losses == b.losses


@pytest.fixture(scope="module")
def reference(generator, target, camera, metrics, tmp_path_factory):
    """An uninterrupted run and its cache directory."""
    cache_dir = tmp_path_factory.mktemp("ref_cache")
    counter = Counter()
    result = run(generator, target, camera, metrics, cache_dir, counter)
    return result, cache_dir, counter


def test_first_run_optimises_and_stores_safetensors_and_json(reference, generator):
    result, cache_dir, counter = reference
    assert not result.from_cache
    assert counter.steps == [("projection", i) for i in range(1, PROJ_STEPS + 1)] + \
        [("tuning", i) for i in range(1, TUNE_STEPS + 1)]
    (entry,) = list(cache_dir.iterdir())
    assert sorted(p.name for p in entry.iterdir()) == [cache_mod.META_NAME, cache_mod.RESULT_NAME]
    meta = json.loads((entry / cache_mod.META_NAME).read_text())
    assert meta["key"] == entry.name and meta["shapes"]["ws"] == [1, generator.num_ws, generator.w_dim]
    assert result.generator_state.keys() == generator.state_dict().keys()


def test_cache_hit_does_no_optimisation_and_leaves_rng_alone(reference, generator, target, camera, metrics):
    result, cache_dir, _ = reference
    counter, rng = Counter(), torch.Generator().manual_seed(0)
    state = rng.get_state()
    hit = invert(generator, target, camera, small_cfg(), cache_dir=cache_dir, lpips=metrics, rng=rng,
                 show_progress=False, callback=counter)
    assert hit.from_cache and counter.steps == []
    assert torch.equal(rng.get_state(), state)
    assert_same(hit, result)


def test_key_depends_on_image_camera_settings_weights_and_seed(generator, target, camera):
    def key(g=generator, image=target, cam=camera, settings=small_cfg().result_settings(), seed=0):
        rng_state = torch.Generator().manual_seed(seed).get_state()
        return cache_mod.cache_key(cache_mod.cache_key_fields(g, image, cam, settings,
                                                              {"projection": "a", "tuning": "b"}, rng_state))

    base = key()
    assert base == key(settings=small_cfg(checkpoint_every=7).result_settings())  # cadence is not a setting
    same_weights = Generator(generator.cfg).eval()  # built and loaded separately: the key follows the weights
    same_weights.load_state_dict(generator.state_dict())
    assert base == key(g=same_weights)
    other_weights = Generator(generator.cfg).eval()
    with torch.no_grad():
        other_weights.load_state_dict(generator.state_dict())
        next(other_weights.parameters()).add_(1e-3)
    variants = [key(image=target.flip(-1)), key(cam=camera.flip(-1)), key(seed=1), key(g=other_weights),
                key(settings=small_cfg(freeze_bg=False).result_settings())]
    assert len({base, *variants}) == 1 + len(variants)


def test_entries_live_in_the_inversion_folder_of_the_face_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NERFFS_CACHE", str(tmp_path))
    assert cache_mod.inversion_dir() == tmp_path / "faces" / "inversion"
    assert cache_mod.inversion_dir(tmp_path / "mine") == tmp_path / "mine" / "inversion"


def _flip_byte(path, offset_from_end=100):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip_tensor_byte", "truncate", "no_meta", "bad_meta_json"])
def test_damaged_entry_is_detected_and_recomputed(reference, generator, target, camera, metrics, tmp_path, damage,
                                                  caplog):
    result, ref_dir, _ = reference
    (src,) = list(ref_dir.iterdir())
    entry = tmp_path / src.name
    entry.mkdir()
    for f in src.iterdir():
        (entry / f.name).write_bytes(f.read_bytes())
    result_file, meta_file = entry / cache_mod.RESULT_NAME, entry / cache_mod.META_NAME
    if damage == "flip_tensor_byte":
        _flip_byte(result_file)
    elif damage == "truncate":
        result_file.write_bytes(result_file.read_bytes()[:-1000])
    elif damage == "no_meta":
        meta_file.unlink()
    else:
        meta_file.write_text("{not json")
    counter = Counter()
    with caplog.at_level(logging.WARNING, logger="nerffs.utils.cache"):
        again = run(generator, target, camera, metrics, tmp_path, counter)
    assert "damaged" in caplog.text
    assert not again.from_cache and len(counter.steps) == PROJ_STEPS + TUNE_STEPS
    assert_same(again, result)
    assert run(generator, target, camera, metrics, tmp_path).from_cache  # the rewritten entry is valid


@pytest.mark.parametrize("stop_at,expected_rerun", [
    (("projection", 5), [("projection", 5), ("projection", 6)] + [("tuning", i) for i in range(1, 6)]),
    (("tuning", 3), [("tuning", 3), ("tuning", 4), ("tuning", 5)]),
])
def test_resume_after_interruption_matches_uninterrupted_run(reference, generator, target, camera, metrics, tmp_path,
                                                             stop_at, expected_rerun):
    with pytest.raises(Interrupt):
        run(generator, target, camera, metrics, tmp_path, Counter(stop_at=stop_at))
    (entry,) = list(tmp_path.iterdir())
    assert (entry / cache_mod.CHECKPOINT_NAME).is_file() and not (entry / cache_mod.META_NAME).exists()
    counter = Counter()
    resumed = run(generator, target, camera, metrics, tmp_path, counter)
    assert counter.steps == expected_rerun  # continued from the last checkpoint, not from scratch
    assert_same(resumed, reference[0])
    assert not (entry / cache_mod.CHECKPOINT_NAME).exists()


def test_damaged_checkpoint_restarts_from_scratch(reference, generator, target, camera, metrics, tmp_path):
    with pytest.raises(Interrupt):
        run(generator, target, camera, metrics, tmp_path, Counter(stop_at=("tuning", 2)))
    (entry,) = list(tmp_path.iterdir())
    _flip_byte(entry / cache_mod.CHECKPOINT_NAME)
    counter = Counter()
    again = run(generator, target, camera, metrics, tmp_path, counter)
    assert len(counter.steps) == PROJ_STEPS + TUNE_STEPS
    assert_same(again, reference[0])


def test_bad_inputs_are_one_line_errors(generator, target, camera, metrics):
    with pytest.raises(InputError, match=r"\[1, 3, H, W\]"):
        invert(generator, target[0], camera, small_cfg(), lpips=metrics)
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        invert(generator, target * 5, camera, small_cfg(), lpips=metrics)
    with pytest.raises(InputError, match=r"\[1, 4, 4\]"):
        invert(generator, target, camera[0], small_cfg(), lpips=metrics)


def test_other_resolution_is_resized(generator, target, camera, metrics):
    big = torch.nn.functional.interpolate(target, size=(96, 96), mode="bilinear", align_corners=False)
    cfg = small_cfg(projection=ProjectionConfig(num_steps=1, w_avg_samples=4, lpips_net="alex"),
                    tuning=TuningConfig(num_steps=1))
    res = invert(generator, big, camera, cfg, lpips=metrics, show_progress=False)
    assert res.ws.shape == (1, generator.num_ws, generator.w_dim)


def test_cli_smoke_writes_loadable_outputs_and_reuses_the_cache(tmp_path, monkeypatch):
    """scripts.invert with the smoke preset (random tiny generator, random LPIPS trunks)."""
    import numpy as np
    from PIL import Image

    from scripts.invert import main
    from stylenerf.io import load_generator

    monkeypatch.setenv("NERFFS_WEIGHTS", str(tmp_path / "weights"))
    image = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    args = ["--image", str(image), "--preset-inversion", "smoke", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "losses.json").read_text())
    assert summary["from_cache"] is False and summary["tuning_steps"] == 6
    g = load_generator(tmp_path / "out" / "generator")
    assert g.img_resolution == 64
    assert main(args) == 0
    assert json.loads((tmp_path / "out" / "losses.json").read_text())["from_cache"] is True
    assert main(["--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o2")]) == 1
