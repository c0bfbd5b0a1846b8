"""LipaintNet training from sampled latents (paper sections 4.4 and 5.1; spec-pipeline.md section 7).

The official repository ships no training code; this follows the paper's recipe:

1. sample z -> w -> frontal render; Deep3D estimates its 3DMM coefficients (``nerffs.lipaint.data``);
2. pseudo ground truth: expression + U(-1, 1) noise, identity kept; target landmarks from the BFM;
3. w' = LipaintNet(w, beta_target), repeated over the NeRF styles -> render -> Deep3D -> BFM landmarks;
4. loss = w_landmark * landmark L2 + w_coeff * (expression L2 + w_id * identity L2)
   + w_gan * non-saturating GAN loss softplus(-D(render)) with the frozen pretrained StyleNeRF D.

Only LipaintNet is trained; G, Deep3D, the BFM and D are frozen (gradients flow through them). Landmarks
are compared in units of the 224 crop (pixels / 224) so that the 1.0 weight is scale-free; this
normalisation is our choice (the paper does not state it).

Engineering: checkpoints (safetensors weights + optimizer/RNG/step state, written atomically, pointer file
``checkpoints/latest.json`` written last), exact ``resume``, sample grids, JSON-lines log (+ TensorBoard
when installed), a progress bar, and DDP through ``torchrun`` (gloo on CPU, nccl on CUDA; rank 0 writes).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from safetensors.torch import save_file

from nerffs import weights
from nerffs.errors import WeightsMissingError
from nerffs.lipaint.data import (CROP, LipaintBatch, estimate_coeffs, landmark_grid, landmarks, render,
                                sample_batch)
from nerffs.lipaint.model import LipaintNet, load_lipaint
from nerffs.lipaint.networks import TalkingModels, load_networks, new_lipaint, seeded_networks, small_deep3d
from nerffs.utils.checkpoint import load_strict, read_state_dict
from nerffs.utils.io import atomic_path, atomic_write_text
from stylenerf.discriminator import Discriminator, DiscriminatorConfig, load_official_discriminator
from torch_utils.registry import Registry

log = logging.getLogger(__name__)



@dataclass
class TrainConfig:
    """LipaintNet training settings (defaults: the paper's recipe, preset 'official')."""

    models: str = "official"
    """'official' (weights registry) or 'smoke' (seeded random tiny models; CPU, seconds)."""
    weights_dir: str | None = None
    """Weights directory for 'official' (default: the registry's)."""
    generator: str = "stylenerf_ffhq512"
    """Registry name of the StyleNeRF generator."""
    discriminator: str | None = None
    """Official StyleNeRF .pkl holding D; None = the generator's registry pickle; 'random' = random D (smoke);
    'none' = no GAN term."""
    init_lipaint: str | None = None
    """Start from these LipaintNet weights (.pt or .safetensors) instead of a fresh initialisation."""
    lr: float = 1e-5
    batch: int = 8
    """Global batch (split evenly over DDP ranks)."""
    iterations: int = 300_000
    w_landmark: float = 1.0
    w_coeff: float = 1.0
    w_id: float = 1.0
    """Weight of the identity-coefficient regulariser inside the coefficient term."""
    w_gan: float = 0.1
    truncation_psi: float = 0.7
    exp_noise: float = 1.0
    random_pose: bool = False
    ckpt_every: int = 5000
    sample_every: int = 1000
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    """'auto' (CUDA when available; per-rank device under torchrun), 'cpu', 'cuda', 'cuda:N'."""
    resolution: int = 64
    """Smoke models only: generator resolution."""
    num_vertices: int = 2000
    """Smoke models only: vertices of the stand-in face model."""
    smoke_small_deep3d: bool = True
    """Smoke models only: a ResNet-18 Deep3D on 64-px crops instead of ResNet-50 on 224 (10x faster on CPU)."""
    progress: bool = True
    tensorboard: bool = True
    """Also log to TensorBoard when ``torch.utils.tensorboard`` imports."""

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        """'official' (Adam 1e-5, batch 8, 300k iterations, weights 1 / 1 / 0.1) or 'smoke' (CPU seconds), with
        ``overrides`` of any field."""
        return dataclasses.replace(PRESETS.get(name), **overrides)


PRESETS: Registry[TrainConfig] = Registry("training", {
    "official": TrainConfig,
    "smoke": lambda: TrainConfig(models="smoke", discriminator="random", lr=1e-3, batch=2, iterations=4, ckpt_every=2,
                                 sample_every=2, log_every=1, device="cpu", progress=False, tensorboard=False),
})


@dataclass
class Frozen:
    """The frozen networks of the objective."""

    generator: nn.Module
    deep3d: nn.Module
    face_model: nn.Module
    discriminator: nn.Module | None


# ---- setup -----------------------------------------------------------------------------------------------------
def _init_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, initialised_here) from the torchrun environment (single process otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if world <= 1:
        return 0, 1, device, False
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device, created


def _build_models(cfg: TrainConfig, models: Any) -> tuple[Frozen, LipaintNet]:
    """Frozen networks + the LipaintNet to train, from ``models`` (``TalkingModels``, or a ``ModelSet`` of the
    pipeline) or, when None, from ``cfg``."""
    if models is None:
        if cfg.models == "smoke":
            models = smoke_training_models(cfg)
        elif cfg.models == "official":
            return _official_models(cfg)
        else:
            raise ValueError(f"TrainConfig.models must be 'official' or 'smoke', got {cfg.models!r}")
    nets = getattr(models, "talking", models)
    lipaint = load_lipaint(cfg.init_lipaint) if cfg.init_lipaint else copy.deepcopy(nets.lipaint)
    return Frozen(nets.generator, nets.deep3d, nets.face_model, _discriminator(cfg, nets.generator)), lipaint


def smoke_training_models(cfg: TrainConfig) -> TalkingModels:
    """The smoke pipeline's networks (``seeded_networks``) for ``cfg`` (seed, resolution, vertices), with the
    small Deep3D when ``cfg.smoke_small_deep3d``. Build once and pass to several ``train`` calls to save the
    setup time."""
    nets = seeded_networks(cfg.seed, resolution=cfg.resolution, num_vertices=cfg.num_vertices)
    if cfg.smoke_small_deep3d:
        nets.deep3d = small_deep3d(cfg.seed)
    log.info("training on seeded random smoke networks (%d px); the result is not a usable LipaintNet",
             cfg.resolution)
    return nets


def _official_models(cfg: TrainConfig) -> tuple[Frozen, LipaintNet]:
    """The official generator, Deep3D and BFM (``load_networks``) and a new (seeded) or ``init_lipaint``
    LipaintNet."""
    missing = weights.missing([cfg.generator, "sadtalker", "bfm_front"], cfg.weights_dir)
    if missing:
        raise WeightsMissingError(f"missing weights {', '.join(missing)}; fetch them with: "
                                  f"{weights.fetch_command(missing, cfg.weights_dir)} (or train with the smoke preset)")
    nets = load_networks(cfg.weights_dir, cfg.generator, parsing=None, lipaint=False)
    frozen = Frozen(nets.generator, nets.deep3d, nets.face_model, _discriminator(cfg, nets.generator))
    if cfg.init_lipaint:
        return frozen, load_lipaint(cfg.init_lipaint)
    torch.manual_seed(cfg.seed)
    return frozen, new_lipaint(nets.generator)


def _discriminator(cfg: TrainConfig, generator: nn.Module) -> nn.Module | None:
    if cfg.discriminator == "none" or cfg.w_gan == 0:
        return None
    if cfg.discriminator == "random":
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2 ** 31, (), generator=gen)))
            return Discriminator(DiscriminatorConfig(img_resolution=generator.img_resolution, channel_base=1024,
                                                     channel_max=32, num_fp16_res=0, mbstd_group_size=4))
    path = cfg.discriminator
    if path is None:
        path = weights.asset_path(cfg.generator, cfg.weights_dir)
    return load_official_discriminator(path)


def _freeze(m: nn.Module | None, device: torch.device) -> nn.Module | None:
    return None if m is None else m.to(device).eval().requires_grad_(False)


# ---- the trainer ---------------------------------------------------------------------------------------------
class LipaintTrainer:
    """State of one training run (one process; DDP-aware). ``train`` drives it; tests may call it directly."""

    def __init__(self, cfg: TrainConfig, out_dir: str | os.PathLike, models: Any = None) -> None:
        self.cfg, self.out_dir = cfg, Path(out_dir)
        self.rank, self.world, self.device, self._owns_pg = _init_distributed(cfg)
        if cfg.batch % self.world:
            raise ValueError(f"batch {cfg.batch} is not divisible by the {self.world} DDP processes")
        self.local_batch = cfg.batch // self.world
        frozen, lipaint = _build_models(cfg, models)
        self.frozen = Frozen(_freeze(frozen.generator, self.device), _freeze(frozen.deep3d, self.device),
                             _freeze(frozen.face_model, self.device), _freeze(frozen.discriminator, self.device))
        self.lipaint: LipaintNet = lipaint.to(self.device).train().requires_grad_(True)
        if self.world > 1:
            self._broadcast_parameters()
            self.net: nn.Module = nn.parallel.DistributedDataParallel(
                self.lipaint, device_ids=[self.device] if self.device.type == "cuda" else None)
        else:
            self.net = self.lipaint
        self.opt = torch.optim.Adam(self.lipaint.parameters(), lr=cfg.lr)
        self.rng = torch.Generator().manual_seed(cfg.seed * 1000 + 17 + self.rank)
        self.step = 0

    def _broadcast_parameters(self) -> None:
        with torch.no_grad():
            for p in self.lipaint.state_dict().values():
                dist.broadcast(p, src=0)

    # -- data ------------------------------------------------------------------------------------------------
    def next_batch(self) -> LipaintBatch:
        """A fresh batch of pseudo ground-truth pairs for this rank (from ``self.rng``)."""
        f, c = self.frozen, self.cfg
        return sample_batch(f.generator, f.deep3d, f.face_model, self.local_batch, self.rng,
                            truncation_psi=c.truncation_psi, exp_noise=c.exp_noise, random_pose=c.random_pose,
                            device=self.device)

    # -- objective -------------------------------------------------------------------------------------------
    def mouth_styles(self, batch: LipaintBatch, net: nn.Module | None = None) -> torch.Tensor:
        """ws' [B, num_ws, w_dim]: LipaintNet(w, beta_target) over the NeRF slots (through DDP's forward unless
        ``net`` is given: gradients are only synchronised when the DDP wrapper is called)."""
        n = self.frozen.generator.synthesis.num_nerf_ws
        w_mouth = (net or self.net)(batch.ws[:, 0], batch.exp_target)
        return torch.cat([w_mouth.unsqueeze(1).expand(-1, n, -1), batch.ws[:, n:]], dim=1)

    def losses(self, batch: LipaintBatch, net: nn.Module | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(total loss, named terms, result image [B, 3, R, R]) for ``batch`` (differentiable)."""
        c, f = self.cfg, self.frozen
        img = render(f.generator, self.mouth_styles(batch, net), batch.cam2world, batch.bg_latent)
        pred = estimate_coeffs(f.deep3d, img)
        lm = ((landmarks(f.face_model, pred) - batch.landmarks_target) / CROP).square().sum(-1).mean()
        exp_l2 = (pred[:, 80:144] - batch.target[:, 80:144]).square().mean()
        id_l2 = (pred[:, :80] - batch.target[:, :80]).square().mean()
        terms = {"landmark": lm, "exp": exp_l2, "id": id_l2}
        total = c.w_landmark * lm + c.w_coeff * (exp_l2 + c.w_id * id_l2)
        if f.discriminator is not None and c.w_gan > 0:
            terms["gan"] = F.softplus(-f.discriminator(img)).mean()
            total = total + c.w_gan * terms["gan"]
        terms["total"] = total
        return total, terms, img

    def train_step(self, batch: LipaintBatch | None = None) -> dict[str, float]:
        """One Adam step on ``batch`` (a fresh one when None); returns the loss terms (averaged over ranks)."""
        batch = batch if batch is not None else self.next_batch()
        self.net.train()
        total, terms, _ = self.losses(batch)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        self.step += 1
        return self._reduce(terms)

    @torch.no_grad()
    def evaluate(self, batch: LipaintBatch) -> dict[str, float]:
        """Loss terms on a fixed ``batch`` without updating anything."""
        _, terms, _ = self.losses(batch)
        return self._reduce(terms)

    def _reduce(self, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        vec = torch.stack([t.detach().float() for t in terms.values()])
        if self.world > 1:
            vec = vec.to(self.device)
            dist.all_reduce(vec)
            vec /= self.world
        return dict(zip(terms, vec.cpu().tolist()))

    # -- checkpoints -----------------------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def _rng_states(self) -> dict[str, torch.Tensor]:
        states = {"data": self.rng.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, states)
            return {f"{k}.{r}": v for r, s in enumerate(gathered) for k, v in s.items()}
        return {f"{k}.0": v for k, v in states.items()}

    def save(self) -> Path:
        """Write the checkpoint of the current step (rank 0 writes; all ranks take part). Returns its weights."""
        rng = self._rng_states()  # collective: every rank must call it
        weights = self.ckpt_dir / f"step-{self.step:08d}.safetensors"
        if self.rank == 0:
            state_path = weights.with_suffix(".state.pt")
            with atomic_path(weights) as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in self.lipaint.state_dict().items()}, str(tmp),
                          metadata={"format": "nerffs-lipaint", "step": str(self.step)})
            with atomic_path(state_path) as tmp:
                torch.save({"step": self.step, "world_size": self.world, "optimizer": self.opt.state_dict(),
                            "rng": rng, "config": dataclasses.asdict(self.cfg)}, tmp)
            atomic_write_text(self.ckpt_dir / "latest.json", json.dumps(
                {"step": self.step, "weights": weights.name, "state": state_path.name}) + "\n")
        self._barrier()
        return weights

    def resume(self) -> bool:
        """Load ``checkpoints/latest.json`` if present (weights, optimizer, RNG states, step). True if loaded."""
        pointer = self.ckpt_dir / "latest.json"
        if not pointer.is_file():
            return False
        info = json.loads(pointer.read_text())
        load_strict(self.lipaint, read_state_dict(self.ckpt_dir / info["weights"], what="LipaintNet checkpoint"),
                    what="LipaintNet checkpoint")
        state = torch.load(self.ckpt_dir / info["state"], map_location="cpu", weights_only=True)
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        rng = state["rng"]
        if f"data.{self.rank}" in rng and state["world_size"] == self.world:
            self.rng.set_state(rng[f"data.{self.rank}"])
            torch.set_rng_state(rng[f"torch.{self.rank}"])
            if self.device.type == "cuda" and f"cuda.{self.rank}" in rng:
                torch.cuda.set_rng_state(rng[f"cuda.{self.rank}"], self.device)
        else:
            log.warning("checkpoint was written by %s processes, now %s: RNG streams re-seeded from the step",
                        state["world_size"], self.world)
            self.rng.manual_seed(self.cfg.seed * 1000 + 17 + self.rank + 7919 * self.step)
        log.info("resumed LipaintNet training at step %d from %s", self.step, info["weights"])
        return True

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    # -- samples ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def save_samples(self, batch: LipaintBatch, max_rows: int = 4) -> Path | None:
        """Grid (rows: samples; columns: identity, identity + target landmarks, result + its landmarks)."""
        if self.rank != 0:
            return None
        _, _, img = self.losses(batch, net=self.lipaint)  # rank 0 alone: bypass the DDP wrapper
        pred = landmarks(self.frozen.face_model, estimate_coeffs(self.frozen.deep3d, img))
        path = self.out_dir / "samples" / f"step-{self.step:08d}.png"
        landmark_grid(batch.img[:max_rows], img[:max_rows], batch.landmarks_target[:max_rows], pred[:max_rows], path)
        return path

    def close(self) -> None:
        if self._owns_pg and dist.is_initialized():
            dist.destroy_process_group()


# ---- logging -------------------------------------------------------------------------------------------------
class _Logs:
    """JSON lines (+ TensorBoard when importable) + a tqdm bar with the losses and it/s; rank 0 only."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, start: int, enabled: bool) -> None:
        self.enabled, self.path, self.tb, self.bar = enabled, out_dir / "log.jsonl", None, None
        self.t0, self.s0 = time.perf_counter(), start
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("TensorBoard not installed: logging to %s only", self.path)
            else:
                self.tb = SummaryWriter(str(out_dir / "tb"))
        if cfg.progress:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=cfg.iterations, initial=start, desc="lipaint", unit="it", dynamic_ncols=True)

    def update(self, step: int, losses: dict[str, float], write: bool) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
        if not write:
            return
        it_s = (step - self.s0) / max(time.perf_counter() - self.t0, 1e-9)
        record = {"step": step, "time": time.time(), "it_s": round(it_s, 4), **losses}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in losses.items():
                self.tb.add_scalar(f"loss/{k}", v, step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


# ---- entry point ---------------------------------------------------------------------------------------------
def run_training(cfg: TrainConfig, out_dir: str | os.PathLike, models: Any = None,
                 resume: bool = False) -> LipaintTrainer:
    """Train up to ``cfg.iterations`` steps and return the trainer (the process group stays open; call
    ``trainer.close()``). See :func:`train`."""
    trainer = LipaintTrainer(cfg, out_dir, models)
    out = trainer.out_dir
    if resume:
        trainer.resume()
    elif (out / "checkpoints" / "latest.json").is_file():
        raise FileExistsError(f"{out} already holds a training run; continue it with --resume (library: "
                              "resume=True), or choose another --out")
    if trainer.rank == 0:
        atomic_write_text(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    logs = _Logs(cfg, out, trainer.step, enabled=trainer.rank == 0)
    try:
        while trainer.step < cfg.iterations:
            batch = trainer.next_batch()
            losses = trainer.train_step(batch)
            step = trainer.step
            logs.update(step, losses, write=step % cfg.log_every == 0 or step == cfg.iterations)
            if not all(math.isfinite(v) for v in losses.values()):
                raise FloatingPointError(f"non-finite LipaintNet loss at step {step}: {losses}")
            if cfg.sample_every and step % cfg.sample_every == 0:
                trainer.save_samples(batch)
            if step % cfg.ckpt_every == 0 and step < cfg.iterations:
                trainer.save()
        final = trainer.save()
        if trainer.rank == 0:
            with atomic_path(out / "lipaint.safetensors") as tmp:
                tmp.write_bytes(final.read_bytes())
        trainer._barrier()
    finally:
        logs.close()
    return trainer


def train(cfg: TrainConfig, out_dir: str | os.PathLike, models: Any = None, *, resume: bool = False) -> Path:
    """Train LipaintNet and return the final weights ``out_dir/lipaint.safetensors`` (``load_lipaint``-able).

    Args:
        cfg: settings (``TrainConfig.preset('official' | 'smoke', ...)``).
        out_dir: run directory: ``config.json``, ``log.jsonl``, ``checkpoints/``, ``samples/``, the result.
        models: a ``ModelSet``/``TalkingModels`` to use (its LipaintNet is copied as the initial weights);
            None builds them from ``cfg``.
        resume: continue from ``out_dir/checkpoints/latest.json`` (exactly: weights, Adam state, RNG, step).

    Under ``torchrun`` every process calls this; rank 0 writes, all ranks return the same path.

    Raises:
        FileExistsError: ``out_dir`` holds a run and ``resume`` is False.
        WeightsMissingError: official weights are missing.
    """
    trainer = run_training(cfg, out_dir, models, resume)
    trainer.close()
    return trainer.out_dir / "lipaint.safetensors"
