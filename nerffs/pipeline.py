"""NeRFFaceSpeech talking-head pipeline: one portrait + one speech recording -> mp4 (paper section 4).

``TalkingHeadPipeline.__call__`` runs numbered steps over small helpers:

1. check the inputs; 2. audio -> waveform and mel windows; 3. detect and align the face; 4. identity: the
photo's pose and latent (PTI inversion or a sampled latent), or, with the offline set, the models fitted to
the photo; 5. reference (frontal render, torso points, 3DMM fit, control points); 6. expression sequence
(Audio2Exp, the offline speech driver, or a driving clip); 7. camera path; 8. two-pass frame loop streamed
into the video (optional paste-back, watermark, PNG frames).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from nerffs import weights
from nerffs.audio import Audio2Exp, audio_to_expression, audio_to_pose, load_audio, mel_windows, smooth_poses
from nerffs.audio.load import speech_warnings
from nerffs.call import Call, Speech, TalkingHeadOutput
from nerffs.config import PipelineConfig, get_config
from nerffs.driving import driving_fps, estimate_driving, read_driving_frames
from nerffs.errors import InputError
from nerffs.face3d.recon import preprocess_rgb_image
from nerffs.inversion import get_preset, invert, inversion_dir
from nerffs.inversion.lpips import BACKBONE_ASSETS, load_lpips
from nerffs.models import OFFLINE, SMOKE, ModelSet, auto_models, offline_models, official_models, smoke_models
from nerffs.options import check_options, check_paths
from nerffs.preprocess.align import AlignConfig, AlignedFace, align_face, fit_photo, paste_back
from nerffs.preprocess.faces import choose_face, detect_faces
from nerffs.preprocess.image import ImageSource, load_image_layers, to_tensor
from nerffs.preprocess.landmarks import DlibLandmarks
from nerffs.progress import ConsoleProgress, ProgressCallback, Reporter
from nerffs.render.cameras import CameraSpec, camera_path, driving_angles_at_frames, front_matrix, pose_cameras
from nerffs.render.job import finish_job, input_digests, start_job
from nerffs.render.manifest import JobManifest
from nerffs.render.coefficients import save_run_animation
from nerffs.render.frames import FrameStore
from nerffs.render.sheet import SheetConfig, keep_frames, write_run_sheet
from nerffs.render.video import add_watermark, write_video
from nerffs.talking.cache import FaceCache
from nerffs.talking.headpose import prepare_pose, procedural_pose
from nerffs.talking.loop import Reference, TalkingModels, prepare_reference, render_frames
from nerffs.utils.cache import content_key, weights_fingerprint
from nerffs.utils.device import check_device
from stylenerf.camera import frontal_camera

log = logging.getLogger(__name__)


class TalkingHeadPipeline:
    """The whole method with its models. Build with :meth:`from_pretrained`.

    The object holds only the models, the device and the default config; every call resolves its own
    :class:`Call`, so concurrent calls with different options on one pipeline are safe.
    """

    def __init__(self, models: ModelSet, config: PipelineConfig | None = None, device: str | torch.device = "cpu"):
        self.device = check_device(device)
        self.models = models.to(self.device)
        self.config = config or get_config(models.source)
        self._detector: DlibLandmarks | None = None
        self._weights_id: str | None = None
        self._init_lock = threading.Lock()  # lazy construction of the shared detector and fingerprint only

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike = SMOKE, *, device: str | torch.device = "cpu",
                        config: PipelineConfig | None = None, seed: int = 0,
                        generator: int | str | None = None) -> "TalkingHeadPipeline":
        """``"smoke"``: seeded random models; ``"offline"``: the offline demo set (fitted to each photo, no
        download); ``"auto"``: the official files in the default weights directory when all are present, else
        the offline set (with a warning listing each missing file and what it does); anything else: a weights
        directory that must hold the official files. ``generator``: the official StyleNeRF file, 256, 512 or
        1024 (None: 512, the default everywhere); the smoke and offline sets have their own.

        Raises:
            InputError: the device cannot be used here (e.g. 'cuda' on a CPU-only torch build), or an unknown
                generator.
        """
        check_device(device)  # before any model is built
        if generator is not None and str(source) in (SMOKE, OFFLINE):
            log.warning("generator %s applies to the official weights; the %s models have their own, so it is "
                        "ignored", generator, source)
        if str(source) == SMOKE:
            return cls(smoke_models(seed), config, device)
        if str(source) == OFFLINE:
            return cls(offline_models(), config, device)
        if str(source) == "auto":
            return cls(auto_models(generator), config, device)
        return cls(official_models(source, generator), config, device)

    @property
    def detector(self) -> DlibLandmarks:
        if self._detector is None:
            with self._init_lock:
                if self._detector is None:
                    self._detector = DlibLandmarks().load()
        return self._detector

    def call(self, options: dict | None = None, *, seed: int = 0, progress: ProgressCallback | None = None,
             show_progress: bool = False) -> Call:
        """Resolve one call: ``options`` (flat ``PipelineConfig`` overrides) checked against this pipeline's
        config, the camera spec parsed, and the progress callbacks (``show_progress`` adds console bars)."""
        config = check_options(options or {}, self.config)  # every option checked before any work
        console = ConsoleProgress() if show_progress else None
        return Call(config=config, camera=CameraSpec.parse(config.render.camera), seed=seed,
                    report=Reporter(console, progress), show_progress=show_progress)

    def _resolve(self, call: Call | None) -> Call:
        return call if call is not None else self.call()

    # ---- steps, in call order ---------------------------------------------------------------------
    def check_inputs(self, image: ImageSource, audio: str | os.PathLike | None, output: str | os.PathLike,
                     call: Call | None = None) -> None:
        """Step 1: fail early, in one line, on inputs that cannot work (``nerffs.options.check_paths``)."""
        cfg = self._resolve(call).config
        check_paths(image, audio, output, needs_audio=cfg.render.expression == "audio")

    def speech(self, audio: str | os.PathLike, transcript: str | None = None, call: Call | None = None) -> Speech:
        """Step 2: audio file -> waveform and mel windows [T, 80, 16] (early, so a bad file fails before any
        rendering)."""
        cfg = self._resolve(call).config.audio
        wave = load_audio(audio, cfg)
        for problem in speech_warnings(wave, cfg):
            log.warning("%s: %s", Path(audio).name, problem)
        return Speech(wave=wave, mel=mel_windows(wave, cfg), transcript=transcript)

    def driving_clip(self, call: Call | None = None):
        """Step 2b: the driving frames (None unless the camera spec is 'driving:PATH'), read early so a bad clip
        fails before any model work."""
        spec = self._resolve(call).camera
        if spec.mode != "driving":
            return None
        return read_driving_frames(spec.driving), driving_fps(spec.driving)

    def align(self, image: ImageSource, face_index: int | None = None, call: Call | None = None
              ) -> tuple[np.ndarray, AlignedFace]:
        """Step 3: load the photo, rank its faces (``nerffs.preprocess.faces``: confident, large, frontal; a
        transparent photo's colour channels are searched too), take face ``face_index`` (None: the config's
        ``face_index``, else face 0; the choice is logged, with a warning when it is doubtful) and align it to
        the generator resolution (cached)."""
        config = self._resolve(call).config
        layers = load_image_layers(image)
        rgb = layers.rgb
        size = self.models.resolution
        cfg = AlignConfig(output_size=size, min_face_size=min(128.0, size))
        det = self.detector
        index = face_index if face_index is not None else config.identity.face_index
        faces = detect_faces(det, rgb, layers.straight, layers.alpha)
        face = choose_face(faces, det.confident_score, index,
                           no_face=f"no face found in the {rgb.shape[1]}x{rgb.shape[0]} image ({det.name} detector); "
                                   f"{det.min_face_hint(rgb)}").face
        cache, key = self._cache(config), content_key("align", rgb, cfg, det.config, face.points)
        aligned = cache.load_aligned(key) if cache else None
        if aligned is None:
            aligned = align_face(rgb, face, cfg)
            if cache:
                cache.save_aligned(key, aligned)
        return rgb, aligned

    def identity(self, aligned: AlignedFace, seed: int, call: Call | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, TalkingModels, torch.Tensor]:
        """Step 4: ws [1, num_ws, w_dim], bg latent [1, z_bg], the networks to render them with and the photo's
        camera [1, 4, 4].

        Official / smoke: the photo's pose from Deep3D, then PTI inversion (it tunes a copy; the pipeline's own
        generator is never modified) or a seeded latent. Offline: the models fitted to the photo, whose
        frontal view is the photo itself (so its camera is the frontal one).
        """
        call = self._resolve(call)
        config = call.config
        if self.models.photo_models is not None:
            talking = self.models.photo_models.personalise(aligned, self._cache(config), self.device)
            g = talking.generator
            log.info("identity: offline portrait field fitted to the photo")
            return (torch.zeros(1, g.num_ws, g.w_dim, device=self.device),
                    torch.zeros(1, g.cfg.nerf.z_dim_bg, device=self.device), talking, frontal_camera(1, self.device))
        cam = self.input_pose(aligned)
        cfg, g = config.identity, self.models.talking.generator
        rng = torch.Generator().manual_seed(seed)
        if self._use_pti(config):
            cache = self._cache(config)
            root = self.models.weights_root  # official sets: the backbones of their own weights directory
            lpips = None if root is None else {net: load_lpips(net, weights.resolve(asset, root), device=self.device)
                                               for net, asset in BACKBONE_ASSETS.items()}
            preset = get_preset(cfg.inversion_preset)
            total = preset.projection.num_steps + preset.tuning.num_steps

            def steps(stage: str, step: int, metrics: dict) -> None:
                done = step + (preset.projection.num_steps if stage == "tuning" else 0)
                call.report.advance("identity", done, total, f"PTI {stage}")

            result = invert(g, to_tensor(aligned.image, self.device), cam, preset,
                            cache_dir=None if cache is None else inversion_dir(cache.root), rng=rng,
                            show_progress=False, lpips=lpips, callback=steps)
            log.info("identity: PTI inversion (%s preset%s)", cfg.inversion_preset,
                     ", from cache" if result.from_cache else "")
            return result.ws, result.bg_latent, dataclasses.replace(self.models.talking, generator=result.apply(g)), cam
        log.info("identity: sampled latent (seed %d, psi %.2f) - the 'from z' mode", seed, cfg.truncation_psi)
        with torch.inference_mode():
            z = torch.randn(1, g.z_dim, generator=rng).to(self.device)
            ws = g.mapping(z, truncation_psi=cfg.truncation_psi)
        bg = torch.randn(1, g.cfg.nerf.z_dim_bg, generator=rng).to(self.device)
        return ws, bg, dataclasses.replace(self.models.talking, generator=g), cam

    def input_pose(self, aligned: AlignedFace) -> torch.Tensor:
        """The photo's camera: Deep3D head pose of the aligned photo -> cam2world [1, 4, 4] (spec 3.5)."""
        with torch.inference_mode():
            img = torch.from_numpy(np.ascontiguousarray(aligned.image)).permute(2, 0, 1)[None].to(self.device)
            angles = self.models.talking.deep3d.predict(preprocess_rgb_image(img)).angle
        return front_matrix(angles).to(self.device)

    def driving_sequence(self, clip, talking: TalkingModels):
        """Step 4b: pose and expression of every driving frame, estimated with the call's face regressor."""
        if clip is None:
            return None
        frames, fps = clip
        return estimate_driving(frames, self.detector, talking.deep3d, fps=fps)

    def reference(self, talking: TalkingModels, photo: np.ndarray, ws: torch.Tensor, bg: torch.Tensor, seed: int,
                  call: Call | None = None) -> Reference:
        """Step 5: frontal render, torso points, 3DMM fit, control points (cached per face and settings)."""
        call = self._resolve(call)
        config = call.config
        loop, fit = config.loop, dataclasses.replace(config.fit, show_progress=False)
        settings = {k: getattr(loop, k) for k in ("vertex_stride", "torso_stride", "deform_mode", "parse_size")}
        head_motion = _head_by_deformation(config)
        if head_motion:  # only then does the reference differ (keys of runs without head motion are unchanged)
            settings["head_motion"] = True
        cache = self._cache(config)
        key = content_key("reference", photo, self._fingerprint(), config.identity, seed, settings, fit)
        ref = cache.load_reference(key, self.device) if cache else None
        if ref is not None:
            log.info("reference: reused the cached 3DMM fit and frontal render (%s)", key[:12])
            return ref
        ref = prepare_reference(talking, ws, bg, loop, detector=self.detector,
                                fit_cfg=dataclasses.replace(config.fit, show_progress=call.show_progress),
                                head_motion=head_motion)
        if cache:
            cache.save_reference(key, ref)
        return ref

    def expressions(self, speech: Speech | None, ref: Reference, driving, seed: int, call: Call | None = None
                    ) -> torch.Tensor:
        """Step 6: exp [T, 64]: Audio2Exp from the reference expression (momentum a_m, scale l_exp), the
        offline speech driver (phones -> visemes, same options), or the driving frames' own expressions
        (video-driven mode, as the official video script). Random blinks are drawn from ``seed``."""
        config = self._resolve(call).config
        if config.render.expression == "driving":
            return driving.exp.to(self.device)
        rng = torch.Generator().manual_seed(seed)
        driver, cfg = self.models.audio2exp, config.audio
        if isinstance(driver, Audio2Exp):
            exp = audio_to_expression(driver, speech.mel, ref.coeffs.exp[0], cfg, generator=rng)
        else:
            exp = driver.expressions(speech.wave, len(speech.mel), cfg, transcript=speech.transcript, generator=rng)
        return exp.to(self.device)

    def head_poses(self, speech: Speech | None, ref: Reference, driving, num_frames: int, seed: int,
                   call: Call | None = None) -> torch.Tensor | None:
        """Step 6b: head pose offsets [T, 3] (pitch, yaw, roll) from the reference pose, scaled, smoothed and
        clamped; None without head motion. 'audio': SadTalker's Audio2Pose from the reference pose and the pose
        style (smoothed as SadTalker does) when its weights are loaded, else the speech-correlated procedural
        motion; 'driving': the driving clip's pose relative to its first frame. Seeded by ``seed``."""
        config = self._resolve(call).config
        m = config.motion
        if not m.moves:
            return None
        if m.pose == "driving":
            if driving is None:
                raise InputError("pose 'driving' needs a driving clip: camera 'driving:FOLDER_OR_VIDEO'")
            fps = None if config.render.expression == "driving" else driving.fps
            angles = driving_angles_at_frames(driving.angles, num_frames, config.audio.fps, fps)
            raw = angles - angles[:1]
        else:
            if speech is None:
                raise InputError("pose 'audio' needs speech; use pose 'none' or 'driving' without audio")
            rng = torch.Generator().manual_seed(seed + 1)
            if self.models.audio2pose is not None:
                start = torch.cat([ref.coeffs.angle[0], ref.coeffs.trans[0]]).cpu()
                poses = smooth_poses(audio_to_pose(self.models.audio2pose, speech.mel, start, m.pose_style,
                                                   generator=rng))
                raw = (poses[:, :3] - start[:3]).cpu()
            else:
                raw = procedural_pose(speech.wave, config.audio.sample_rate, num_frames, config.audio.fps,
                                      m.pose_style, rng)
        return prepare_pose(raw, m).to(self.device)

    def cameras(self, base: torch.Tensor, num_frames: int, driving=None, pose: torch.Tensor | None = None,
                call: Call | None = None) -> torch.Tensor:
        """Step 7: the camera of every frame [T, 4, 4] from the call's camera spec (with head motion rendered by
        the camera, each turned by the inverse head pose; with the driving pose turned by deformation, the
        camera keeps the input pose)."""
        call = self._resolve(call)
        spec, config = call.camera, call.config
        m = config.motion
        if m.moves and m.pose == "driving" and spec.mode == "driving":
            if m.head_motion == "camera":
                pose = None  # the driving camera path already is that pose
            else:
                spec = CameraSpec.parse("input").with_offset(spec.yaw, spec.pitch)
        if pose is not None and m.head_motion == "camera":
            return pose_cameras(self.cameras(base, num_frames, driving, call=call), pose)
        angles = None if driving is None else driving.angles
        # Audio-driven: a driving clip is re-timed to the output rate (NFS pairs frames one to one whatever the
        # rate). Video-driven: output frame t is driving frame t.
        fps = None if driving is None or config.render.expression == "driving" else driving.fps
        return camera_path(spec, base, num_frames, config.audio.fps, driving_angles=angles,
                           driving_fps=fps).to(self.device)

    def frames(self, talking: TalkingModels, ref: Reference, exp: torch.Tensor, cams: torch.Tensor,
               photo: np.ndarray, aligned: AlignedFace, pose: torch.Tensor | None = None,
               job: JobManifest | None = None, call: Call | None = None) -> Iterator[np.ndarray]:
        """Step 8: frames in order, with paste-back (into the photo scaled to ``max_size``), watermark, and
        resume from ``frames_dir`` (its job manifest checked and written before the first frame). Reports
        each frame to the call's progress."""
        call = self._resolve(call)
        rc = call.config.render
        if rc.paste_back:
            h, w = photo.shape[:2]
            photo, aligned = fit_photo(photo, aligned, rc.max_size)
            if photo.shape[:2] != (h, w):
                log.info("paste-back: the %dx%d photo is larger than max_size %d; frames are %dx%d (max_size=None "
                         "keeps the full size)", w, h, rc.max_size, photo.shape[1], photo.shape[0])
        size = photo.shape[:2] if rc.paste_back else (self.models.resolution,) * 2
        store = FrameStore(rc.frames_dir) if rc.frames_dir else None
        start = finish_job(store, job, size, int(exp.shape[0]), rc.resume) if store is not None else 0
        return self._frames(call, talking, ref, exp, cams, photo, aligned, pose, store, start, size)

    def _frames(self, call, talking, ref, exp, cams, photo, aligned, pose, store, start, size
                ) -> Iterator[np.ndarray]:
        rc, total = call.config.render, int(exp.shape[0])
        if start:
            log.info("resuming after %d rendered frames in %s", start, rc.frames_dir)
            for i, frame in enumerate(store.read(start, size)):
                call.report.advance("frames", i + 1, total, "resumed", frame)
                yield frame
        head = pose if _head_by_deformation(call.config) else None
        for i, frame in enumerate(render_frames(talking, ref, exp, cams, call.config.loop, False, start=start,
                                                pose=head), start=start):
            if rc.paste_back:
                frame = paste_back(photo, frame, aligned)
            if rc.watermark:
                frame = add_watermark(frame, rc.watermark_text)
            if store is not None:
                store.write(i, frame)
            call.report.advance("frames", i + 1, total, "", frame)
            yield frame

    # ---- the whole run ---------------------------------------------------------------------------
    def __call__(self, image: ImageSource, audio: str | os.PathLike | None, output: str | os.PathLike, *, seed: int = 0,
                 show_progress: bool = True, transcript: str | None = None, progress: ProgressCallback | None = None,
                 **options) -> TalkingHeadOutput:
        """Make a talking-head video.

        Args:
            image: portrait photo (path, PIL image or uint8 array).
            audio: speech recording (any format ffmpeg reads); may be None in the video-driven mode.
            output: destination .mp4 (written atomically).
            seed: seed of every random choice (sampled identity, blink).
            show_progress: progress bars on the console (one per step).
            transcript: the words spoken in ``audio``, when known (the offline models align them to the audio
                for exact mouth shapes; the official Audio2Exp does not use them).
            progress: called with a ``nerffs.progress.ProgressEvent`` as each step starts, advances (every
                frame, with the frame) and ends.
            **options: flat overrides of ``PipelineConfig`` fields (e.g. ``exp_scale=1.2``, ``camera='orbit'``),
                for this call only.
        """
        call = self.call(options, seed=seed, progress=progress, show_progress=show_progress)
        try:
            return self._run(call, image, audio, output, transcript)
        finally:
            for callback in call.report.callbacks:
                if isinstance(callback, ConsoleProgress):
                    callback.close()

    def _run(self, call: Call, image: ImageSource, audio: str | os.PathLike | None, output: str | os.PathLike,
             transcript: str | None) -> TalkingHeadOutput:
        cfg, seed, report = call.config, call.seed, call.report
        t: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            t[name], clock = now - clock, now

        report.start("check")                                                       # 1
        self.check_inputs(image, audio, output, call)
        job = start_job(cfg, input_digests(image, audio, transcript, cfg.render.camera), seed,
                        {"set": self.models.label, "fingerprint": self._fingerprint()})
        report.start("speech")                                                      # 2
        video_driven = cfg.render.expression == "driving"
        speech = None if audio is None or video_driven else self.speech(audio, transcript, call)
        clip = self.driving_clip(call)
        report.start("align")                                                       # 3
        photo, aligned = self.align(image, call=call)
        lap("load_align")
        report.start("identity")                                                    # 4
        ws, bg, talking, base_cam = self.identity(aligned, seed, call)
        driving = self.driving_sequence(clip, talking)
        lap("identity")
        report.start("reference")                                                   # 5
        ref = self.reference(talking, photo, ws, bg, seed, call)
        lap("reference")
        report.start("expressions")                                                 # 6
        exp = self.expressions(speech, ref, driving, seed, call)
        pose = self.head_poses(speech, ref, driving, exp.shape[0], seed, call)
        lap("audio2exp")
        report.start("cameras")                                                     # 7
        cams = self.cameras(base_cam, exp.shape[0], driving, pose, call)
        report.start("frames", int(exp.shape[0]))                                   # 8
        frames = self.frames(talking, ref, exp, cams, photo, aligned, pose, job, call)
        sheet_cfg, kept = SheetConfig(), {}
        if cfg.render.preview_sheet:
            frames = keep_frames(frames, sheet_cfg.frame_indices(exp.shape[0]), kept)
        frames = _then(frames, lambda: report.start("encode"))
        path = write_video(frames, output, fps=cfg.audio.fps, audio_path=audio, quality=cfg.render.quality,
                           metadata=self._provenance())
        lap("render")
        if cfg.render.preview_sheet:
            log.info("wrote the contact sheet %s", write_run_sheet(path, kept, talking.generator, ws, bg, sheet_cfg,
                                                                    self.models.describe()))
        coefficients = None
        if cfg.render.save_coefficients is not None:
            coefficients = save_run_animation(cfg, talking, ref, exp, cams, pose, self.models.label)
        report.end("encode")
        log.info("wrote %s (%d frames, %s) in %.1f s", path, exp.shape[0], self.models.describe(), sum(t.values()))
        return TalkingHeadOutput(video=path, num_frames=int(exp.shape[0]), fps=cfg.audio.fps, exp=exp,
                                 cams=cams, ws=ws, weights=self.models.label, timings=t, pose=pose,
                                 coefficients=coefficients)

    # ---- helpers ---------------------------------------------------------------------------------
    def _use_pti(self, config: PipelineConfig) -> bool:
        """'pti': always; 'sample': never; 'auto': with official models and the LPIPS backbones present."""
        source = config.identity.source
        if source not in ("pti", "sample", "auto"):
            raise InputError(f"identity source must be 'pti', 'sample' or 'auto', got {source!r}")
        if source != "auto":
            return source == "pti"
        if self.models.source != "official":
            return False
        root = self.models.weights_root
        missing = weights.missing(["lpips_vgg16_backbone", "lpips_alexnet_backbone"], root)
        if missing:
            log.warning("identity: PTI needs the LPIPS backbones (%s; fetch: %s); using a sampled latent instead",
                        ", ".join(missing), weights.fetch_command(missing, root))
        return not missing

    @staticmethod
    def _cache(config: PipelineConfig) -> FaceCache | None:
        cfg = config.identity
        return FaceCache(cfg.cache_dir) if cfg.cache else None

    def _fingerprint(self) -> str:
        """Identifies every model the per-face results depend on (computed once per pipeline)."""
        if self._weights_id is None:
            with self._init_lock:
                if self._weights_id is None:
                    self._weights_id = self._compute_fingerprint()
        return self._weights_id

    def _compute_fingerprint(self) -> str:
        if self.models.photo_models is not None:
            return content_key(self.models.label, self.models.photo_models.fingerprint())
        t = self.models.talking
        return content_key(self.models.label, *[weights_fingerprint(m) for m in
                                                (t.generator, t.deep3d, t.parser, t.face_model)])

    def _provenance(self) -> dict[str, str]:
        return {"comment": f"synthetic content: talking head generated by nerffs (NeRFFaceSpeech), "
                           f"{self.models.describe()}",
                "title": "nerffs synthetic talking head"}


def _head_by_deformation(config: PipelineConfig) -> bool:
    m = config.motion
    return m.moves and m.head_motion == "deform"


def _then(items: Iterator[np.ndarray], after) -> Iterator[np.ndarray]:
    """``items``, then call ``after()`` once they are exhausted (the encoder then finishes the file)."""
    yield from items
    after()
