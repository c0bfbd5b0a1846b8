"""LipaintNet training (nerffs.lipaint.train): loss goes down, exact resume, DDP on 2 CPU processes, and the
trained weights load into the talking-head path. Smoke models only (seconds on CPU)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from nerffs.lipaint.data import sample_batch
from nerffs.lipaint.model import load_lipaint
from nerffs.lipaint.train import LipaintTrainer, TrainConfig, smoke_training_models, train
from stylenerf.camera import frontal_camera

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread):
    """The smoke nets are tiny: one intra-op thread (see ``single_thread``)."""
    yield


@pytest.fixture(scope="module")
def models():
    """One set of smoke models shared by the runs (each ``train`` trains a copy of its LipaintNet)."""
    return smoke_training_models(TrainConfig.preset("smoke"))


def test_presets():
    official = TrainConfig.preset("official")
    assert (official.lr, official.batch, official.iterations) == (1e-5, 8, 300_000)
    assert (official.w_landmark, official.w_coeff, official.w_gan, official.exp_noise) == (1.0, 1.0, 0.1, 1.0)
    assert TrainConfig.preset("smoke", iterations=3).iterations == 3
    with pytest.raises(ValueError, match="unknown training preset"):
        TrainConfig.preset("nope")


def test_pseudo_ground_truth_keeps_identity(tmp_path):
    tr = LipaintTrainer(TrainConfig.preset("smoke"), tmp_path)
    b = tr.next_batch()
    assert b.img.shape == (2, 3, 64, 64) and b.landmarks_target.shape == (2, 68, 2)
    noise = b.exp_target - b.coeffs[:, 80:144]
    assert noise.abs().max() <= 1.0 and noise.abs().min() > 0
    torch.testing.assert_close(b.target[:, :80], b.coeffs[:, :80])    # identity kept
    torch.testing.assert_close(b.target[:, 144:], b.coeffs[:, 144:])   # texture, pose, light kept
    # The batch stream is a function of the generator state only.
    f = tr.frozen
    again = sample_batch(f.generator, f.deep3d, f.face_model, 2, torch.Generator().manual_seed(17))
    torch.testing.assert_close(again.exp_target, b.exp_target)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tmp_path, models):
    tr = LipaintTrainer(TrainConfig.preset("smoke"), tmp_path, models)
    batch = tr.next_batch()
    before = tr.evaluate(batch)
    assert set(before) == {"landmark", "exp", "id", "gan", "total"}
    for _ in range(5):
        tr.train_step(batch)
    after = tr.evaluate(batch)
    assert after["total"] < before["total"]


def test_resume_equals_uninterrupted_and_checkpoint_loads(tmp_path, models):
    cfg8 = TrainConfig.preset("smoke", iterations=8, ckpt_every=4, sample_every=4)
    a = load_lipaint(train(cfg8, tmp_path / "full", models))
    first = load_lipaint(train(TrainConfig.preset("smoke", iterations=4, ckpt_every=4, sample_every=4),
                               tmp_path / "split", models))
    assert not torch.equal(first.fc1.weight, a.fc1.weight)
    with pytest.raises(FileExistsError):
        train(cfg8, tmp_path / "split", models)
    b = load_lipaint(train(cfg8, tmp_path / "split", models, resume=True))
    for k, v in a.state_dict().items():  # 4 + 4 steps == 8 steps, bit for bit
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0)

    run = tmp_path / "split"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 8
    state = torch.load(run / "checkpoints" / "step-00000008.state.pt", weights_only=True)
    assert state["step"] == 8 and "data.0" in state["rng"] and state["optimizer"]["state"]
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    assert {p.name for p in (run / "samples").iterdir()} == {"step-00000004.png", "step-00000008.png"}


def test_trained_checkpoint_drives_the_lipaint_pass(tmp_path, models):
    path = train(TrainConfig.preset("smoke", iterations=1, sample_every=0), tmp_path / "run", models)
    net = load_lipaint(path)
    assert not torch.equal(net.fc1.weight, models.lipaint.fc1.weight)  # trained a copy, not the input
    g = models.generator
    ws = g.mapping(torch.randn(1, g.z_dim), truncation_psi=0.7)
    exp = torch.rand(3, 64) * 2 - 1
    styles = net.mouth_styles(ws, exp, g.synthesis.num_nerf_ws)
    assert styles.shape == (3, g.num_ws, g.w_dim)
    img = g.synthesis(styles, frontal_camera(3), bg_latent=torch.zeros(3, g.cfg.nerf.z_dim_bg), freeze_bg=True).img
    assert img.shape == (3, 3, 64, 64) and torch.isfinite(img).all()


@pytest.mark.slow
def test_trained_checkpoint_runs_in_the_talking_head_pipeline(tmp_path, models):
    from nerffs.examples import example_photo, example_speech
    from nerffs.models import smoke_models
    from nerffs.pipeline import TalkingHeadPipeline
    from nerffs.render.video import read_video

    path = train(TrainConfig.preset("smoke", iterations=1, sample_every=0), tmp_path / "run", models)
    model_set = smoke_models(0)  # the smoke pipeline's models (128 px); same tiny w_dim as the trained net
    model_set.talking.lipaint = load_lipaint(path)  # what official_models does with the registry file
    pipe = TalkingHeadPipeline(model_set)
    speech = example_speech(tmp_path / "hi.wav", text="Hi.")
    out = pipe(example_photo(), speech, tmp_path / "talk.mp4", show_progress=False)
    frames, _ = read_video(out.video)
    assert frames.shape[0] == out.num_frames > 0


WORKER = textwrap.dedent("""
    import os, sys, torch
    from nerffs.lipaint.train import TrainConfig, run_training
    out = sys.argv[1]
    tr = run_training(TrainConfig.preset("smoke", iterations=2, ckpt_every=100, sample_every=2), out)
    torch.save({k: v.detach() for k, v in tr.lipaint.state_dict().items()},
               os.path.join(out, f"params_rank{tr.rank}.pt"))
    tr.close()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_cpu_processes_hold_identical_parameters(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
           "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script), str(out)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    p0, p1 = (torch.load(out / f"params_rank{r}.pt", weights_only=True) for r in (0, 1))
    for k in p0:
        torch.testing.assert_close(p0[k], p1[k], rtol=0, atol=0)
    final = load_lipaint(out / "lipaint.safetensors")
    torch.testing.assert_close(final.fc4.weight, p0["fc4.weight"], rtol=0, atol=0)
    state = torch.load(out / "checkpoints" / "step-00000002.state.pt", weights_only=True)
    assert state["world_size"] == 2 and {"data.0", "data.1"} <= set(state["rng"])
    # Each rank drew its own batch (batch 2 split over 2 processes): the logged loss is the mean over ranks.
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    assert (out / "samples" / "step-00000002.png").is_file()  # rank 0 alone renders the grid
