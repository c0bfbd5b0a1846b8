"""Gradio demo: one portrait photo + one speech recording -> a 3D-aware talking head (NeRFFaceSpeech).

    python app.py                        # official weights when present, else the offline demo models (banner)
    python app.py --port 7860 --share    # also a public gradio.live link
    python app.py --models offline       # the offline demo models: each photo fitted on first use, no download
    python app.py --models smoke         # seeded random models: proves the pipeline runs, shows no face

API endpoints (stable names, see README "Web demo and API"): ``/preview`` (photo -> aligned face, landmark
overlay, novel-view orbit), ``/generate`` (photo + audio + options -> mp4) and ``/tts`` (text -> wav, only
when espeak-ng is installed). Importing this module does no work: ``build_demo`` and ``main`` do.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

API_NAMES = ("preview", "generate", "tts")
"""The demo's public endpoints (``gradio_client.Client.predict(..., api_name="/generate")``)."""


def build_demo(pipeline, *, example_audio: str | os.PathLike | None = None, concurrency_limit: int = 1,
               max_queue: int = 16, preview_views: int = 16, workspace=None, segment_seconds: float = 1.0):
    """The demo's ``gr.Blocks`` around a ``TalkingHeadPipeline`` (nothing is launched).

    Args:
        pipeline: the pipeline every request runs on (its per-face cache is shared by all requests; its calls hold
            no per-call state, so requests need no lock).
        example_audio: optional speech file offered with the example photo.
        concurrency_limit: renders (previews, videos) that run at once; the others wait in the queue. The live
            view's single frames have their own queue of the same size.
        max_queue: requests that may wait; more are refused with "queue full".
        preview_views: frames of the novel-view orbit preview.
        workspace: ``nerffs.app_support.Workspace`` for outputs (default: a private temporary folder).
        segment_seconds: length of the streamed video's segments (the video plays while later ones render).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from nerffs import app_support as sup
    from nerffs.audio.speech import find_espeak
    from nerffs.examples import example_photo
    from nerffs.serving import stream_talking_head
    from nerffs.utils.cli import error_line

    log = logging.getLogger("nerffs.app")
    work = workspace or sup.Workspace()
    cfg = pipeline.config
    has_tts = find_espeak() is not None
    default_head = sup.HEAD_MOTIONS[0] if not cfg.motion.moves else (
        sup.HEAD_MOTIONS[2] if cfg.motion.head_motion == "camera" else sup.HEAD_MOTIONS[1])

    def readable_photo(component):
        """Undecodable uploads fail with a one-line message (wraps this instance's preprocess; a gr.Image
        subclass would make gradio write a .pyi stub next to this file)."""
        original = component.preprocess

        def preprocess(payload):
            try:
                return original(payload)
            except gr.Error:
                raise
            except Exception:  # noqa: BLE001 - PIL raises several types for non-images
                name = getattr(payload, "orig_name", None) or "upload"
                raise gr.Error(f"the photo {name!r} is not a readable image; upload a jpg, png or webp file",
                               print_exception=False) from None

        component.preprocess = preprocess
        return component

    temp_roots = tuple(str(p) for p in (work.root, os.environ.get("GRADIO_TEMP_DIR"),
                                        Path(tempfile.gettempdir()) / "gradio") if p)

    def fail(exc: BaseException, *uploads):
        """Every failure reaches the user as one line, naming files as uploaded (never server temp paths);
        unexpected ones keep their trace in the server log."""
        if isinstance(exc, gr.Error):
            raise exc
        if not isinstance(exc, (ValueError, OSError)):
            log.error("request failed", exc_info=exc)
        names = {str(u): Path(str(u)).name for u in uploads if u}
        message = sup.user_message(error_line(exc).removeprefix("error: "), names, temp_roots)
        raise gr.Error(message, print_exception=False) from None

    def bar(progress):
        """The pipeline's progress events -> Gradio's progress bar: the step's name and the whole call's share."""
        return lambda event: progress(event.overall, desc=event.label)

    def prepare(photo, seed=0, face=0, progress=None):
        path = sup.check_image_file(photo)
        return sup.preview_identity(pipeline, path, work.new(), seed=int(seed or 0), num_views=preview_views,
                                    face_index=sup.face_number(face), show_progress=False,
                                    progress=None if progress is None else bar(progress))

    def preview(photo, seed=0, face=0, progress=gr.Progress()):
        """Photo -> (aligned face, landmark overlay, novel-view orbit mp4) of face number ``face``."""
        try:
            out = prepare(photo, seed, face, progress)
            return out.aligned, out.overlay, None if out.orbit is None else str(out.orbit)
        except Exception as exc:  # noqa: BLE001 - turned into a one-line gr.Error
            fail(exc, photo)

    def preview_session(photo, seed=0, face=0, view_yaw=0.0, view_pitch=0.0, progress=gr.Progress()):
        """The UI's preview: also keeps the prepared identity in the session and shows the live view."""
        try:
            out = prepare(photo, seed, face, progress)
            orbit = None if out.orbit is None else str(out.orbit)
            return out.aligned, out.overlay, orbit, out.identity, out.identity.view(view_yaw, view_pitch)
        except Exception as exc:  # noqa: BLE001 - turned into a one-line gr.Error
            fail(exc, photo)

    def faces(photo, face=0):
        """Photo -> the photo with its faces boxed and numbered (the face picker)."""
        if not photo:
            return None
        try:
            overlay, _ = sup.faces_preview(pipeline, sup.check_image_file(photo), sup.face_number(face))
            return overlay
        except Exception as exc:  # noqa: BLE001 - turned into a one-line gr.Error
            fail(exc, photo)

    def live_view(identity, view_yaw=0.0, view_pitch=0.0):
        """The session's prepared identity from the sliders' camera (one frame); nothing before a preview."""
        if identity is None:
            return gr.skip()
        try:
            return identity.view(view_yaw, view_pitch)
        except Exception as exc:  # noqa: BLE001 - turned into a one-line gr.Error
            fail(exc)

    def use_view(view_yaw, view_pitch):
        """'Use this view for the video': a fixed camera at the live view's angles (camera 'fixed:yaw=..,pitch=..')."""
        return "fixed", view_yaw, view_pitch

    def request(photo, audio, driving_video=None, exp_scale=cfg.audio.exp_scale, momentum=cfg.audio.ref_momentum,
                mask_window=cfg.loop.mask_window, blink=cfg.audio.blink == "random", camera="input pose", yaw=0.0,
                pitch=0.0, period=4.0, expression_from_driving=False, paste_back=False, seed=0, transcript="",
                head=default_head, pose_scale=cfg.motion.pose_scale, blink_strength=cfg.audio.blink_strength,
                face=0, progress=gr.Progress()):
        """Photo + speech (+ options) -> talking-head mp4 with the speech as its sound track. ``transcript``: the
        words spoken, when known (set by the Speak button; the offline models align them); ``face``: the photo's
        face number (0: the best ranked)."""
        try:
            path = sup.check_image_file(photo)
            if not audio and not expression_from_driving:
                raise gr.Error("no speech given; upload or record audio (or type text and press Speak)",
                               print_exception=False)
            spec = sup.camera_spec(camera, yaw, pitch, period, driving=driving_video or None)
            options = sup.run_options(exp_scale=exp_scale, momentum=momentum, mask_window=mask_window,
                                      blink=blink, camera=spec, expression_from_driving=expression_from_driving,
                                      paste_back=paste_back, head=head, pose_scale=pose_scale,
                                      blink_strength=blink_strength, face_index=sup.face_number(face))
        except Exception as exc:  # noqa: BLE001 - turned into a one-line gr.Error
            fail(exc, photo, audio, driving_video)
        folder = work.new()
        run = dict(image=path, audio=audio or None, output=folder / "talking_head.mp4", seed=int(seed or 0),
                   transcript=(transcript or "").strip() or None,
                   save_coefficients=str(folder / "talking_head_animation.npz"), **options)
        return run, progress, (photo, audio, driving_video)

    @functools.wraps(request)  # the API's parameter names
    def generate(*args, **kwargs):
        run, progress, uploads = request(*args, **kwargs)
        try:
            return str(pipeline(show_progress=False, progress=bar(progress), **run).video)
        except Exception as exc:  # noqa: BLE001 - turned into a one-line gr.Error
            fail(exc, *uploads)

    @functools.wraps(request)
    def generate_live(*args, **kwargs):
        """The UI's Generate: the video streamed while it renders (segments), the step and share in the progress
        bar and the status line, then the finished mp4 and the animation .npz to download."""
        run, progress, uploads = request(*args, **kwargs)
        segments = Path(run["output"]).parent / "segments"
        last, shown = None, None
        stream = stream_talking_head(pipeline, segment_dir=segments, segment_seconds=segment_seconds, **run)
        try:
            for update in stream:
                last = update.event or last
                if last is not None:
                    progress(last.overall, desc=last.label)
                if update.output is not None:
                    out = update.output
                    yield (gr.skip(), str(out.video), str(out.coefficients),
                           f"Done: {out.num_frames} frames ({out.num_frames / out.fps:.1f} s). Download below.")
                elif update.segment is not None:
                    yield str(update.segment.path), gr.skip(), gr.skip(), sup.status_line(last)
                    update.segment.path.unlink(missing_ok=True)  # Gradio has read it into the stream
                elif update.event is None or last.step != shown:  # a heartbeat or a new step
                    shown = None if last is None else last.step
                    yield gr.skip(), gr.skip(), gr.skip(), sup.status_line(last)
        except Exception as exc:  # noqa: BLE001 - turned into a one-line gr.Error
            fail(exc, *uploads)
        finally:
            stream.close()  # the page went away mid-render: the render stops at its next frame
            shutil.rmtree(segments, ignore_errors=True)

    def tts(text):
        """Text -> speech wav (espeak-ng)."""
        from nerffs.examples import example_speech

        try:
            text = (text or "").strip()
            if not text:
                raise gr.Error("type some text to speak first", print_exception=False)
            return str(example_speech(work.new() / "speech.wav", text[:1000]))
        except Exception as exc:  # noqa: BLE001
            fail(exc)

    banner = sup.models_banner(pipeline.models)
    res = pipeline.models.resolution
    with gr.Blocks(title="nerffs: NeRFFaceSpeech talking heads", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# NeRFFaceSpeech: one photo + speech -> 3D-aware talking head")
        gr.Markdown(banner, elem_id="weights-banner")
        identity = gr.State(None, time_to_live=3600)  # this session's prepared face (PreparedIdentity)
        with gr.Row():
            with gr.Column():
                photo = readable_photo(gr.Image(type="filepath", label="Portrait photo",
                                                sources=["upload", "clipboard"], elem_id="photo"))
                audio = gr.Audio(type="filepath", sources=["upload", "microphone"], label="Speech",
                                 elem_id="audio")
                with gr.Row(visible=has_tts):
                    text = gr.Textbox(label="Text to speech (espeak-ng)", placeholder="Hi there.", scale=3,
                                      elem_id="tts-text")
                    speak = gr.Button("Speak", scale=1, elem_id="tts-button")
                # The words of the speech when known: set by Speak, cleared when other audio arrives (API: transcript).
                spoken = gr.Textbox(value="", visible=False, label="Transcript", elem_id="transcript")
                driving = gr.Video(label="Driving video (optional: head pose, or expressions too)",
                                   sources=["upload"], elem_id="driving")
                examples = [[str(example_photo())] + ([str(example_audio)] if example_audio else [])]
                gr.Examples(examples, inputs=[photo, audio] if example_audio else [photo], label="Examples")
                with gr.Group():
                    view = gr.Image(label="Live view of the identity (after 'Preview face'; drag the sliders)",
                                    interactive=False, elem_id="live-view")
                    with gr.Row():
                        view_yaw = gr.Slider(-30, 30, value=0, step=1, label="View yaw (deg)", elem_id="view-yaw")
                        view_pitch = gr.Slider(-20, 20, value=0, step=1, label="View pitch (deg)",
                                               elem_id="view-pitch")
                    use_view_btn = gr.Button("Use this view for the video (fixed camera)", elem_id="use-view")
            with gr.Column():
                with gr.Accordion("Controls", open=True):
                    exp_scale = gr.Slider(0.0, 3.0, value=cfg.audio.exp_scale, step=0.1,
                                          label="Expression scale (l_exp)")
                    momentum = gr.Slider(0.0, 0.95, value=cfg.audio.ref_momentum, step=0.05,
                                         label="Expression momentum (a_m)")
                    mask_window = gr.Slider(1, 15, value=cfg.loop.mask_window, step=1,
                                            label="Mouth-mask window (frames)")
                    with gr.Row():
                        blink = gr.Checkbox(value=cfg.audio.blink == "random", label="Eye blinks")
                        blink_strength = gr.Slider(0.0, 2.0, value=cfg.audio.blink_strength, step=0.1,
                                                   label="Blink strength")
                    with gr.Row():
                        head = gr.Radio(list(sup.HEAD_MOTIONS), value=default_head, label="Head motion")
                        pose_scale = gr.Slider(0.0, 2.0, value=cfg.motion.pose_scale, step=0.1,
                                               label="Head motion scale")
                    camera = gr.Radio(list(sup.CAMERA_MODES), value="input pose", label="Camera", elem_id="camera")
                    with gr.Row():
                        yaw = gr.Slider(-30, 30, value=0, step=1, label="Yaw (deg; orbit: amplitude)", elem_id="yaw")
                        pitch = gr.Slider(-20, 20, value=0, step=1, label="Pitch (deg; orbit: amplitude)",
                                          elem_id="pitch")
                        period = gr.Slider(1, 10, value=4, step=0.5, label="Orbit period (s)")
                    from_driving = gr.Checkbox(value=False, label="Expressions from the driving video")
                    paste = gr.Checkbox(value=cfg.render.paste_back, label="Paste the face back into the photo")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    face = gr.Number(value=0, precision=0, minimum=0, label="Face number (see 'Faces found')",
                                     elem_id="face-index")
                    gr.Markdown(f"Output: {res}x{res} pixels at {cfg.audio.fps:g} fps (set by the weights).")
                with gr.Row():
                    preview_btn = gr.Button("Preview face", elem_id="preview-button")
                    run_btn = gr.Button("Generate", variant="primary", elem_id="generate-button")
                video = gr.Video(label="Talking head (plays while it renders)", elem_id="output-video",
                                 interactive=False, streaming=True, autoplay=True)
                status = gr.Markdown("", elem_id="job-status")
                with gr.Row():
                    download = gr.File(label="Finished video (mp4)", interactive=False, elem_id="download-video")
                    animation = gr.File(label="Animation (.npz: expression, cameras, head pose per frame)",
                                        interactive=False, elem_id="animation")
                with gr.Row():
                    found = gr.Image(label="Faces found (numbers for 'Face number')", interactive=False,
                                     elem_id="faces")
                    aligned = gr.Image(label="Aligned face", interactive=False, elem_id="aligned")
                    overlay = gr.Image(label="Landmarks", interactive=False, elem_id="landmarks")
                    orbit = gr.Video(label="Novel views of the identity", interactive=False, autoplay=True,
                                     loop=True, elem_id="orbit")
        api_video = gr.Video(visible=False)  # /generate's answer: the finished mp4
        shared = dict(concurrency_id="pipeline", concurrency_limit=concurrency_limit)
        preview_in, preview_out = [photo, seed, face], [aligned, overlay, orbit]
        session_in, session_out = preview_in + [view_yaw, view_pitch], preview_out + [identity, view]
        gen_in = [photo, audio, driving, exp_scale, momentum, mask_window, blink, camera, yaw, pitch, period,
                  from_driving, paste, seed, spoken, head, pose_scale, blink_strength, face]
        preview_btn.click(preview_session, session_in, session_out, api_visibility="private", **shared)
        # The face picker: every detected face numbered, redrawn when the photo or the number changes.
        for event in (photo.change, face.change):
            event(faces, [photo, face], [found], api_visibility="private", **shared)
        # Generate: the preview first (quick, cached per face), then the video, streamed while it renders.
        run_btn.click(preview_session, session_in, session_out, api_visibility="private", **shared).success(
            generate_live, gen_in, [video, download, animation, status], api_name="generate_live",
            api_visibility="private", **shared)
        # Live view: one frame per slider position (the latest wins), in its own queue so it never waits for a video.
        for slider in (view_yaw, view_pitch):
            slider.input(live_view, [identity, view_yaw, view_pitch], [view], api_visibility="private",
                         trigger_mode="always_last", show_progress="hidden", concurrency_id="views",
                         concurrency_limit=concurrency_limit)
        use_view_btn.click(use_view, [view_yaw, view_pitch], [camera, yaw, pitch], api_visibility="private")
        # The stable API endpoints /preview and /generate (the finished video), on buttons that are never shown.
        api_preview_btn, api_btn = gr.Button(visible=False), gr.Button(visible=False)
        api_preview_btn.click(preview, preview_in, preview_out, api_name="preview", **shared)
        api_btn.click(generate, gen_in, [api_video], api_name="generate", **shared)
        speak.click(tts, [text], [audio], api_name="tts", concurrency_limit=2,
                    api_visibility="public" if has_tts else "private").success(
            lambda t: (t or "").strip()[:1000], [text], [spoken], api_visibility="private")
        for event in (audio.upload, audio.stop_recording, audio.clear):  # new speech: its words are unknown
            event(lambda: "", None, [spoken], api_visibility="private")
    demo.queue(max_size=max_queue, default_concurrency_limit=concurrency_limit)
    return demo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python app.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--models", "--weights", dest="weights", default="auto", metavar="SET",
                   help="model set: 'auto' (default: official if complete, else offline), 'offline', 'smoke', "
                        "or a weights directory")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--generator", default=None, choices=["256", "512", "1024"],
                   help="official StyleNeRF generator file (default 512); only for the official weights")
    p.add_argument("--concurrency", type=int, default=1,
                   help="renders that run at once (default 1: on a CPU one render uses every core); the others "
                        "wait in the queue")
    p.add_argument("--max-queue", type=int, default=16, help="requests that may wait (default 16)")
    p.add_argument("--max-file-size", default="50mb", help="largest upload (default 50mb)")
    p.add_argument("--segment-seconds", type=float, default=1.0,
                   help="length of the streamed video's segments (default 1 s; longer when frames render slowly)")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from nerffs.utils.cli import run_cli

    return run_cli(lambda: _serve(ns))


def _serve(ns: argparse.Namespace) -> int:
    """Load the pipeline, build the demo and serve it until stopped; the temporary folder goes with it (at
    exit, on Ctrl-C and on SIGTERM)."""
    from nerffs.app_support import Workspace, install_termination_cleanup
    from nerffs.audio.speech import find_espeak
    from nerffs.examples import example_speech
    from nerffs.pipeline import TalkingHeadPipeline
    from nerffs.utils.device import check_device

    check_device(ns.device)
    pipeline = TalkingHeadPipeline.from_pretrained(ns.weights, device=ns.device, generator=ns.generator)
    work = Workspace()
    install_termination_cleanup(work.close)
    speech = example_speech(work.root / "example_speech.wav", "Hi there. I am a talking head.") \
        if find_espeak() else None
    demo = build_demo(pipeline, example_audio=speech, concurrency_limit=ns.concurrency,
                      max_queue=ns.max_queue, workspace=work, segment_seconds=ns.segment_seconds)
    print(f"nerffs demo: {pipeline.models.describe()} on http://{ns.host}:{ns.port}/ (temporary files in "
          f"{work.root})", file=sys.stderr, flush=True)
    try:
        demo.launch(server_name=ns.host, server_port=ns.port, share=ns.share, max_file_size=ns.max_file_size,
                    allowed_paths=[str(Path(work.root))])
    finally:
        work.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
