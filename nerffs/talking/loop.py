"""The talking-head frame loop (paper sections 4.3-4.5; spec-stylenerf.md 7.6, spec-pipeline.md 8).

Once per identity (``prepare_reference``): a frontal reference render with frozen background; its sample
depths and background are kept for every frame; parsing gives the static (torso) control points; Deep3D +
landmark fitting give the reference 3DMM coefficients and the reference control points.

Per frame (``render_frames``), two generator passes instead of the official three (the official first pass
is overwritten before use):

1. LipaintNet pass: styles [w' x num_nerf_ws, upsampler ws] with w' = LipaintNet(w, exp_t), no deformation
   -> its NeRF features and an image whose parsed mouth region, averaged over the last n frames, is the mask.
2. Final pass: the identity styles with the ray deformation of frame t, and the NeRF features blended with
   pass 1's under that mask.

Work shared by all frames is done once: the background (camera-independent with ``freeze_bg``) and the sample
depths; sample-to-control-point matches are reused while the camera holds still. Frames are batched (``batch_size`` per generator call); the mask
smoothing stays causal and sequential. Everything runs under ``torch.inference_mode``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from nerffs.deform.rays import ControlPointDeformer, match_reference_samples
from nerffs.errors import NoFaceError
from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.face3d.fit import FitConfig, fit_landmarks, fit_photometric
from nerffs.face3d.recon import preprocess_generator_image
from nerffs.lipaint.networks import TalkingModels
from nerffs.preprocess.image import from_tensor
from nerffs.talking.blend import TemporalMaskSmoother, blend_features
from nerffs.talking.controls import FACE_FRAME, ControlPoints, to_plane, torso_control_points
from nerffs.talking.headpose import neck_pivot, rotate_about_pivot, turn_plane_points
from nerffs.talking.mouthpass import MouthWindow, touches_inner_edge, upsample_window
from nerffs.talking.roc import FixedView, supports_region_of_change
from nerffs.utils.logging import progress
from nerffs.utils.modules import module_device
from nerffs.utils.timing import NO_TIMER, StageTimer
from stylenerf import Generator, SampleDepths, SynthesisOutput
from stylenerf.camera import frontal_camera

log = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    """Options of the frame loop (paper defaults)."""

    vertex_stride: int = 4
    """Every k-th 3DMM vertex becomes a control point."""
    torso_stride: int = 4
    """Every k-th static-mask pixel becomes a pinned control point."""
    deform_mode: str = "world"
    """'world': match samples to control points for the camera rendered; 'official': reuse frontal matches."""
    mask_window: int = 7
    """n: the mouth mask is averaged over the last n frames."""
    blend_size: int = 512
    """Blending resolution S (official 512)."""
    blend_mode: str = "bicubic"
    official_blend: bool = False
    """Use the official blend formula (re-filters all features) instead of the residual form."""
    batch_size: int | None = None
    """Frames per generator call; None chooses from the free memory of the device (``auto_batch_size``)."""
    parse_size: int | None = None
    """Resolution of the parsing masks; None = the parser's input size."""
    region_of_change: bool = True
    """While the camera holds still, re-render only the samples, rays and upsampled pixels a frame changes
    (exact: ``nerffs.talking.roc``); moving cameras always take the full pass."""
    mouth_window: bool = True
    """While the camera holds still (and the parser can parse crops), upsample and parse the LipaintNet pass
    only around the recent mouth masks (``nerffs.talking.mouthpass``; the mask may differ slightly from
    full-frame parsing where the parser pools globally). Batches of one frame only."""


@dataclass
class Reference:
    """Everything computed once per identity.

    ws [1, num_ws, w_dim]; bg_latent [1, z_bg]; depths [1, P, S] coarse/fine; bg_feat [1, P, 3 + F];
    coeffs: fitted reference 3DMM coefficients (batch 1); controls: reference control points;
    image [1, 3, R, R] frontal reference render; official_indices: frontal matches for deform_mode 'official'.
    With head motion by deformation the controls hold a head group (hair) and ``pivot`` / ``pivot_plane`` are set.
    """

    ws: torch.Tensor
    bg_latent: torch.Tensor
    depths: SampleDepths
    bg_feat: torch.Tensor
    coeffs: FaceCoeffs
    controls: ControlPoints
    image: torch.Tensor
    official_indices: dict[str, torch.Tensor] = field(default_factory=dict)
    fit_error_px: float | None = None
    pivot: torch.Tensor | None = None
    """[3] the neck pivot in 3DMM model space (head motion by deformation; None without it)."""
    pivot_plane: torch.Tensor | None = None
    """[3] the same pivot in world units of the control plane (x = 0, y, z), for the head points."""


def _fit_reference(models: TalkingModels, image: torch.Tensor, detector, fit_cfg: FitConfig
                   ) -> tuple[FaceCoeffs, float | None]:
    """Deep3D on the frontal render, refined on its detected landmarks and, with ``fit_cfg.photometric``, on its
    colours through the differentiable renderer (spec 3.6, 4)."""
    init = models.deep3d.predict(preprocess_generator_image(image))
    if detector is None:
        return init, None
    face224 = from_tensor(torch.nn.functional.interpolate(image, size=(224, 224), mode="bicubic",
                                                          align_corners=False))[0]
    try:
        landmarks = detector.detect(face224)
    except NoFaceError:
        log.warning("no face found in the frontal reference render; using the Deep3D coefficients unrefined")
        return init, None
    target = torch.as_tensor(landmarks.points, dtype=torch.float32, device=image.device)[None]
    with torch.inference_mode(False), torch.enable_grad():
        init_g = FaceCoeffs(**{k: v.clone() for k, v in vars(init).items()})
        if fit_cfg.photometric:  # the official second stage: landmarks + colour through the renderer
            photo = preprocess_generator_image(image.clone())
            result = fit_photometric(models.face_model, init_g, target, photo, fit_cfg)
        else:
            result = fit_landmarks(models.face_model, init_g, target, fit_cfg)
    return result.coeffs, float(result.landmark_error.mean())


@torch.inference_mode()
def prepare_reference(models: TalkingModels, ws: torch.Tensor, bg_latent: torch.Tensor, cfg: LoopConfig, *,
                      detector=None, fit_cfg: FitConfig | None = None, head_motion: bool = False) -> Reference:
    """Frontal reference render, torso points, fitted 3DMM and control points (spec 7.6 'once before the loop').

    Args:
        models: the networks.
        ws: [1, num_ws, w_dim] identity styles; bg_latent: [1, z_bg].
        cfg: loop options.
        detector: a landmark detector with ``detect(uint8 image)`` (None: Deep3D coefficients unrefined).
        fit_cfg: landmark-fitting options (default: official iteration counts).
        head_motion: split the static points into a head group (parser ``head_mask``) that can turn with the
            head and the pinned rest, and locate the neck pivot (head motion by deformation).
    """
    g = models.generator
    front = g.synthesis(ws, frontal_camera(1, ws.device), bg_latent=bg_latent, freeze_bg=True)
    size = cfg.parse_size or models.parser.config.input_size
    static = models.parser.static_mask(front.img, size=size)[0, 0]
    head = None
    if head_motion:
        on_head = models.parser.head_mask(front.img, size=size)[0, 0] * static
        head, static = torso_control_points(on_head, cfg.torso_stride), static * (1 - on_head)
    torso = torso_control_points(static, cfg.torso_stride)
    coeffs, err = _fit_reference(models, front.img, detector, fit_cfg or FitConfig())
    geo = models.face_model(coeffs)
    controls = ControlPoints.build(geo.proj, torso, cfg.vertex_stride, head_points=head)
    log.info("reference: %d face + %d head + %d static control points%s", controls.n_face, controls.n_head,
             torso.shape[0], "" if err is None else f", landmark fit error {err:.2f} px")
    indices = {}
    if cfg.deform_mode == "official":
        indices = match_reference_samples(controls.ref, front.nerf.points_coarse, front.nerf.points_fine)
    pivot = pivot_plane = None
    if head_motion:
        pivot = neck_pivot(geo.verts_world[0], models.face_model.keypoints)
        on_plane = to_plane(models.face_model.project(models.face_model.to_camera(pivot[None, None]))[0, 0],
                            FACE_FRAME)
        pivot_plane = torch.cat([pivot.new_zeros(1), on_plane])
    return Reference(ws=ws, bg_latent=bg_latent, depths=front.nerf.depths, bg_feat=front.nerf.bg_feat,
                     coeffs=coeffs, controls=controls, image=front.img, official_indices=indices,
                     fit_error_px=err, pivot=pivot, pivot_plane=pivot_plane)


def estimate_frame_bytes(g: Generator) -> int:
    """Rough peak activation memory of one frame of one pass (float32): NeRF samples and the largest
    upsampler block, with a safety factor for intermediates (pad, adapter, blur, FIR)."""
    c = g.cfg
    points = c.resolution_vol ** 2 * c.renderer.n_ray_samples * 2
    nerf = points * (4 * c.nerf.fg_hidden + 3 * (3 + c.nerf.rgb_out_dim)) * 4
    up = max(c.upsampler.channels(r) * r * r for r in c.block_resolutions) * 4 * 10
    return nerf + up


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device`` (CUDA: the driver's free memory; CPU: MemAvailable, else 4 GiB)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def auto_batch_size(g: Generator, fraction: float = 0.25, cap: int = 16) -> int:
    """Frames per call so that one pass uses at most ``fraction`` of the free memory (1..cap).

    On CPU, batching full-size models does not pay (measured on 2 cores at ffhq512: 1.66 s/frame with 1 frame
    per call, 1.80 s with 4), so CPU batches only small models, where per-call overhead dominates.
    """
    device, _ = module_device(g)
    per_frame = estimate_frame_bytes(g)
    if device.type == "cpu" and per_frame > 64 * 2**20:
        return 1
    return int(max(1, min(cap, fraction * available_memory(device) // per_frame)))


def _expand_depths(d: SampleDepths, b: int) -> SampleDepths:
    return SampleDepths(d.coarse.expand(b, -1, -1), None if d.fine is None else d.fine.expand(b, -1, -1))


class FrameRenderer:
    """Renders frames for (expression, camera) pairs; holds the causal mask smoother between calls."""

    def __init__(self, models: TalkingModels, ref: Reference, cfg: LoopConfig, timer: StageTimer = NO_TIMER) -> None:
        self.models, self.ref, self.cfg, self.timer = models, ref, cfg, timer
        self.smoother = TemporalMaskSmoother(cfg.mask_window)
        self.index_cache: dict = {}  # sample-point set -> nearest control points (reused while the camera holds)
        self.parse_size = cfg.parse_size or models.parser.config.input_size
        self.view: FixedView | None = None       # the cached render of a camera that holds still
        self._last_cam: torch.Tensor | None = None
        self.window = MouthWindow(cfg.mask_window)
        self.mouth_window_frames = 0             # frames whose LipaintNet pass used the mouth window

    def driven_controls(self, exp: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        """exp [B, 64] (and head pose offsets [B, 3]) -> driven control points [B, N, 2] (reference coefficients
        with exp replaced; with a pose, the face and head points turned about the neck pivot)."""
        with self.timer("controls"):
            return self._driven_controls(exp, pose)

    def _driven_controls(self, exp: torch.Tensor, pose: torch.Tensor | None) -> torch.Tensor:
        b = exp.shape[0]
        coeffs = FaceCoeffs(**{k: v.expand(b, -1) for k, v in vars(self.ref.coeffs).items()}).replace(exp=exp)
        face_model = self.models.face_model
        if pose is None:
            return self.ref.controls.driven(face_model(coeffs).proj, self.cfg.vertex_stride)
        if self.ref.pivot is None:
            raise ValueError("head poses need a reference made with head_motion=True")
        verts = rotate_about_pivot(face_model(coeffs).verts_world, pose, self.ref.pivot)
        proj = face_model.project(face_model.to_camera(verts))
        head = turn_plane_points(self.ref.controls.head, pose, self.ref.pivot_plane)
        return self.ref.controls.driven(proj, self.cfg.vertex_stride, head=head)

    def lipaint_pass(self, exp: torch.Tensor, cams: torch.Tensor) -> SynthesisOutput:
        """Pass 1: LipaintNet styles, no deformation. Returns the synthesis output."""
        syn, ref, b = self.models.generator.synthesis, self.ref, exp.shape[0]
        with self.timer("lipaint_pass"):
            ws_lip = self.models.lipaint.mouth_styles(ref.ws, exp, syn.num_nerf_ws)
            nerf = syn.render_nerf(ws_lip, cams, bg_latent=ref.bg_latent.expand(b, -1), freeze_bg=True,
                                   depths=_expand_depths(ref.depths, b), bg_feat=ref.bg_feat.expand(b, -1, -1))
            return SynthesisOutput(img=syn.upsample(nerf.feat, nerf.img_nerf, ws_lip), nerf=nerf)

    def keep_masks(self, lip_img: torch.Tensor) -> torch.Tensor:
        """Causally smoothed keep masks (1 - mouth) for consecutive frames: [B, 3, R, R] -> [B, 1, S, S]."""
        with self.timer("parsing"):
            return self._smooth(self.models.parser.mouth_mask(lip_img, size=self.parse_size))

    def _smooth(self, mouth: torch.Tensor) -> torch.Tensor:
        """Raw mouth masks [B, 1, S, S] -> smoothed keep masks; the mouth window remembers where they were."""
        out = []
        for i in range(mouth.shape[0]):
            self.window.update(mouth[i:i + 1])
            out.append(1 - self.smoother(mouth[i:i + 1]))
        return torch.cat(out)

    def mouth_window_pass(self, exp: torch.Tensor, cams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The LipaintNet pass upsampled and parsed only in the mouth window (one frame): (raw mouth mask
        [1, 1, S, S], NeRF features [1, F, Rv, Rv]), or None when the frame needs the full pass."""
        syn, ref = self.models.generator.synthesis, self.ref
        rv, s = syn.cfg.resolution_vol, self.parse_size
        window = self.window.cells(s, rv)
        if window is None or s % rv:
            return None
        with self.timer("lipaint_pass"):
            ws_lip = self.models.lipaint.mouth_styles(ref.ws, exp, syn.num_nerf_ws)
            nerf = syn.render_nerf(ws_lip, cams, bg_latent=ref.bg_latent, freeze_bg=True, depths=ref.depths,
                                   bg_feat=ref.bg_feat)
            crop = upsample_window(syn, nerf.feat, nerf.img_nerf, ws_lip, window)
        y0, y1, x0, x1 = (v * (s // rv) for v in window)
        with self.timer("parsing"):
            found = self.models.parser.mouth_mask_crop(crop, syn.cfg.img_resolution, (y1 - y0, x1 - x0))
        if touches_inner_edge(found, window, rv):
            return None
        mouth = torch.zeros(1, 1, s, s, dtype=found.dtype, device=found.device)
        mouth[..., y0:y1, x0:x1] = found
        return mouth, nerf.feat

    def final_pass(self, exp: torch.Tensor, cams: torch.Tensor, lip_feat: torch.Tensor, keep: torch.Tensor,
                   pose: torch.Tensor | None = None) -> torch.Tensor:
        """Pass 2: identity styles, ray deformation of these frames (head turned by ``pose``), blended features.
        Returns images [B, 3, R, R]; frames whose camera holds still go through the region of change."""
        syn, ref, cfg, b, timer = self.models.generator.synthesis, self.ref, self.cfg, exp.shape[0], self.timer
        driven = self.driven_controls(exp, pose)

        def hook(f: torch.Tensor, lf: torch.Tensor = lip_feat, k: torch.Tensor = keep) -> torch.Tensor:
            with timer("blend"):
                return blend_features(f, lf, k, cfg.blend_size, cfg.blend_mode, official=cfg.official_blend)

        views = [self._fixed_view(cams[i:i + 1]) for i in range(b)]
        if all(v is not None for v in views):
            disp = ref.controls.ref[0] - driven
            return torch.cat([v.render(disp[i], lambda f, i=i: hook(f, lip_feat[i:i + 1], keep[i:i + 1]), timer)
                              for i, v in enumerate(views)])
        deformer = ControlPointDeformer(ref.controls.ref, driven, mode=cfg.deform_mode,
                                        official_indices=ref.official_indices, index_cache=self.index_cache)
        ws = ref.ws.expand(b, -1, -1)
        with timer("nerf"):
            nerf = syn.render_nerf(ws, cams, bg_latent=ref.bg_latent.expand(b, -1), freeze_bg=True,
                                   depths=_expand_depths(ref.depths, b), bg_feat=ref.bg_feat.expand(b, -1, -1),
                                   deform=_timed(deformer, timer, "matching"))
        feat = hook(nerf.feat)
        with timer("upsampler"):
            return syn.upsample(feat, nerf.img_nerf, ws)

    def _fixed_view(self, cam: torch.Tensor) -> FixedView | None:
        """The cached view of ``cam`` [1, 4, 4] when the camera holds still (the same camera as the frame
        before), built on its second frame; None for a moving camera or when the region of change is off."""
        last, self._last_cam = self._last_cam, cam
        if not self.cfg.region_of_change or not supports_region_of_change(self.models.generator.synthesis):
            return None
        if self.view is not None and self.view.matches(cam):
            return self.view
        if last is None or not torch.equal(last, cam):
            return None
        ref = self.ref
        official = self.cfg.deform_mode == "official"
        with self.timer("fixed_view_setup"):
            self.view = FixedView(self.models.generator.synthesis, cam, ref.ws, ref.bg_feat, ref.depths,
                                  controls=None if official else ref.controls.ref,
                                  indices=ref.official_indices if official else None)
        return self.view

    @torch.inference_mode()
    def render(self, exp: torch.Tensor, cams: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        """Consecutive frames: exp [B, 64], cams [B, 4, 4], optional head pose offsets [B, 3] -> images
        [B, 3, R, R] in [-1, 1]."""
        if exp.shape[0] != cams.shape[0] or (pose is not None and pose.shape[0] != exp.shape[0]):
            raise ValueError(f"{exp.shape[0]} expressions for {cams.shape[0]} cameras"
                             + ("" if pose is None else f" and {pose.shape[0]} poses"))
        window = None
        if (exp.shape[0] == 1 and self.cfg.mouth_window and getattr(self.models.parser, "supports_crops", False)
                and self.view is not None and self.view.matches(cams[0])):
            window = self.mouth_window_pass(exp, cams)
        if window is not None:
            self.mouth_window_frames += 1
            mouth, lip_feat = window
            keep = self._smooth(mouth)
        else:
            lip = self.lipaint_pass(exp, cams)
            keep, lip_feat = self.keep_masks(lip.img), lip.nerf.feat
        return self.final_pass(exp, cams, lip_feat, keep, pose)


def _timed(deform, timer: StageTimer, stage: str):
    """The deformation callable with its time (nearest control points, displacement) booked to ``stage``."""
    if not timer.enabled:
        return deform

    def call(points: torch.Tensor, which: str) -> torch.Tensor:
        with timer(stage):
            return deform(points, which)
    return call


def render_frames(models: TalkingModels, ref: Reference, exp: torch.Tensor, cams: torch.Tensor, cfg: LoopConfig,
                  show_progress: bool = True, start: int = 0, pose: torch.Tensor | None = None,
                  timer: StageTimer = NO_TIMER) -> Iterator[np.ndarray]:
    """Render frames ``start..T-1`` in batches, yielding uint8 [R, R, 3] frames in order.

    Args:
        exp: [T, 64] expression per frame; cams: [T, 4, 4] camera per frame.
        pose: [T, 3] head pose offsets turned by deformation (None: the head keeps the reference pose).
        timer: books the seconds of each stage (benchmarks).
        start: first frame to render (resume). The mask smoother is warmed up on the preceding
            ``mask_window - 1`` frames (LipaintNet pass only), so a resumed run matches an uninterrupted one.
    """
    if exp.shape[0] != cams.shape[0]:
        raise ValueError(f"{exp.shape[0]} expressions for {cams.shape[0]} cameras")
    renderer = FrameRenderer(models, ref, cfg, timer)
    with torch.inference_mode():
        for i in range(max(0, start - cfg.mask_window + 1), start):
            renderer.keep_masks(renderer.lipaint_pass(exp[i:i + 1], cams[i:i + 1]).img)
    batch = cfg.batch_size or auto_batch_size(models.generator)
    log.info("rendering %d frames, %d per generator call", exp.shape[0] - start, batch)
    starts = range(start, exp.shape[0], batch)
    for s in progress(starts, desc="render frames", total=len(starts), enabled=show_progress, unit="batch"):
        e = slice(s, s + batch)
        yield from from_tensor(renderer.render(exp[e], cams[e], None if pose is None else pose[e]))
