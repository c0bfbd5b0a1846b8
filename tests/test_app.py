"""The Gradio demo (app.py): built without launching, and served on 127.0.0.1 with the smoke pipeline."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install -r requirements.txt)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gradio_env(tmp_path_factory):
    """Gradio's caches and analytics: a private temp folder, no network."""
    old = {k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED")}
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def smoke_pipeline():
    from nerffs.pipeline import TalkingHeadPipeline

    return TalkingHeadPipeline.from_pretrained("smoke")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    from nerffs.audio.speech import find_espeak
    from nerffs.examples import example_speech

    if find_espeak() is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return example_speech(tmp_path_factory.mktemp("speech") / "hi.wav", "Hi there.")


@pytest.fixture(scope="module")
def served(gradio_env, smoke_pipeline, speech):
    """The demo launched on 127.0.0.1 (smoke models) and a gradio_client for it."""
    import app
    from gradio_client import Client

    demo = app.build_demo(smoke_pipeline, example_audio=speech, preview_views=4)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, max_file_size="5mb")
    try:
        yield url, Client(url, verbose=False)
    finally:
        demo.close()


def ffmpeg_streams(path: Path) -> str:
    from nerffs.render.video import ffmpeg_exe

    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return res.stderr


# ---- no server --------------------------------------------------------------------------------------
def test_import_does_no_work():
    code = "import sys, app; print(sorted(m for m in ('gradio', 'torch', 'nerffs.pipeline') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_parser_defaults():
    import app

    ns = app.build_parser().parse_args([])
    assert (ns.host, ns.weights, ns.share) == ("127.0.0.1", "auto", False)
    assert app.build_parser().parse_args(["--host", "0.0.0.0", "--port", "9000", "--share"]).port == 9000


def test_camera_spec_parses():
    from nerffs.app_support import camera_spec
    from nerffs.errors import InputError
    from nerffs.render.cameras import CameraSpec

    assert camera_spec("input pose") == "input"
    fixed = CameraSpec.parse(camera_spec("fixed", 20, -10))
    assert fixed.mode == "fixed" and fixed.yaw == pytest.approx(np.deg2rad(20))
    orbit = CameraSpec.parse(camera_spec("orbit", 15, 5, 3))
    assert orbit.mode == "orbit" and orbit.orbit_period == pytest.approx(3)
    assert camera_spec("orbit", driving="/x/clip.mp4") == "driving:/x/clip.mp4"
    with pytest.raises(InputError):
        camera_spec("spin")


def test_run_options_are_pipeline_fields():
    from nerffs.app_support import run_options
    from nerffs.config import get_config

    opts = run_options(exp_scale=1.2, momentum=0.3, mask_window=5, blink=True, camera="input", paste_back=True)
    cfg = get_config("smoke").replace(**opts)
    assert (cfg.audio.exp_scale, cfg.audio.blink, cfg.loop.mask_window, cfg.render.paste_back) == (1.2, "random", 5,
                                                                                                  True)


def test_landmark_overlay_and_image_check(tmp_path):
    from nerffs.app_support import check_image_file, landmark_overlay
    from nerffs.errors import InputError

    img = np.zeros((64, 64, 3), np.uint8)
    pts = np.stack([np.linspace(10, 50, 68), np.linspace(10, 50, 68)], 1)
    out = landmark_overlay(img, pts)
    assert out.shape == img.shape and out.any() and not img.any()
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        check_image_file(bad)


def test_workspace_removes_old_folders():
    from nerffs.app_support import Workspace

    work = Workspace(max_age=3600)
    a = work.new()
    (a / "x.mp4").write_bytes(b"1")
    os.utime(a, (time.time() - 7200, time.time() - 7200))
    b = work.new()  # sweeps a
    assert not a.exists() and b.is_dir()
    work.close()
    assert not work.root.exists()


def test_build_demo_without_launching(gradio_env, smoke_pipeline):
    import app

    demo = app.build_demo(smoke_pipeline)
    assert isinstance(demo, gr.Blocks)
    names = {fn.api_name for fn in demo.fns.values()}
    assert {"preview", "generate"} <= names
    assert "SMOKE" in str(demo.config)  # the banner says which weights run
    params = [p["parameter_name"] for p in demo.get_api_info()["named_endpoints"]["/generate"]["parameters"]]
    assert params[:2] == ["photo", "audio"] and "transcript" in params  # the words, for alignment


def test_banner_names_the_offline_models(gradio_env):
    import app
    from nerffs.pipeline import TalkingHeadPipeline

    demo = app.build_demo(TalkingHeadPipeline.from_pretrained("offline"))
    assert "OFFLINE demo models in use" in str(demo.config) and "512x512" in str(demo.config)


# ---- served on 127.0.0.1 --------------------------------------------------------------------------------
@pytest.mark.slow
def test_generate_returns_playable_mp4_with_audio(served, speech):
    from gradio_client import handle_file

    from nerffs.examples import example_photo
    from nerffs.render.video import read_video

    _, client = served
    video = client.predict(photo=handle_file(str(example_photo())), audio=handle_file(str(speech)),
                           api_name="/generate")
    path = Path(video["video"] if isinstance(video, dict) else video)
    frames, fps = read_video(path)
    assert frames.shape[0] > 5 and frames.shape[-1] == 3 and fps == pytest.approx(25)
    info = ffmpeg_streams(path)
    assert re.search(r"Video: h264", info) and re.search(r"Audio: aac", info), info


@pytest.mark.slow
def test_preview_returns_face_landmarks_and_orbit(served):
    from gradio_client import handle_file

    from nerffs.examples import example_photo
    from nerffs.render.video import read_video

    _, client = served
    aligned, overlay, orbit = client.predict(handle_file(str(example_photo())), 0, api_name="/preview")
    assert Path(aligned).is_file() and Path(overlay).is_file()
    orbit = orbit["video"] if isinstance(orbit, dict) else orbit
    assert read_video(orbit)[0].shape[0] == 4


@pytest.mark.slow
def test_two_concurrent_requests_complete(served, speech):
    from gradio_client import handle_file

    from nerffs.examples import example_photo

    _, client = served
    jobs = [client.submit(photo=handle_file(str(example_photo())), audio=handle_file(str(speech)), seed=s,
                          camera=cam, yaw=10, api_name="/generate") for s, cam in ((0, "input pose"), (1, "orbit"))]
    outs = [job.result(timeout=240) for job in jobs]
    paths = [Path(o["video"] if isinstance(o, dict) else o) for o in outs]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths) and paths[0] != paths[1]


def test_bad_upload_is_a_one_line_error(served, speech, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    _, client = served
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a photo")
    with pytest.raises(AppError) as info:
        client.predict(photo=handle_file(str(bad)), audio=handle_file(str(speech)), api_name="/generate")
    msg = str(info.value)
    assert "not a readable image" in msg and "\n" not in msg and "Traceback" not in msg


def test_no_face_is_a_one_line_error(served, speech, tmp_path):
    from PIL import Image
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    _, client = served
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(blank)
    with pytest.raises(AppError) as info:
        client.predict(photo=handle_file(str(blank)), audio=handle_file(str(speech)), api_name="/generate")
    assert "face" in str(info.value).lower() and "\n" not in str(info.value)


def test_tts_endpoint(served):
    from nerffs.audio import load_audio
    from nerffs.config import get_config

    _, client = served
    wav = client.predict("Hi there.", api_name="/tts")
    assert load_audio(wav, get_config("smoke").audio).size > 1000


def test_head_motion_controls_map_to_pipeline_options():
    from nerffs.app_support import HEAD_MOTIONS, run_options
    from nerffs.config import get_config

    base = dict(exp_scale=1.5, momentum=0.5, mask_window=7, blink=True, camera="input")
    assert "pose" not in run_options(**base)                        # keep the model set's default
    still = run_options(**base, head=HEAD_MOTIONS[0])
    turn = run_options(**base, head=HEAD_MOTIONS[2], pose_scale=0.5, blink_strength=1.4)
    assert still["pose"] == "none" and (turn["pose"], turn["head_motion"], turn["pose_scale"]) == ("audio", "camera", 0.5)
    cfg = get_config("offline").replace(**turn)
    assert (cfg.motion.head_motion, cfg.audio.blink_strength) == ("camera", 1.4)
    with pytest.raises(Exception, match="head motion"):
        run_options(**base, head="spin")


# ---- issue #16: face picker, animation download, error names, SIGTERM ----------------------------------------
def test_face_picker_and_api_outputs(gradio_env, smoke_pipeline):
    """The public /generate answers the video only (the UI's Generate also offers the animation .npz), and the
    face picker numbers the faces of the photo."""
    import app
    from nerffs.examples import example_photo

    demo = app.build_demo(smoke_pipeline)
    fns = {f.api_name: f for f in demo.fns.values()}
    assert [type(o).__name__ for o in fns["generate"].outputs] == ["Video"]
    assert [type(o).__name__ for o in fns["generate_live"].outputs] == ["Video", "File", "File", "Markdown"]
    overlay = fns["faces"].fn(str(example_photo()), 0)
    assert overlay.shape == (512, 512, 3)
    params = [p["parameter_name"] for p in demo.get_api_info()["named_endpoints"]["/generate"]["parameters"]]
    assert params[-1] == "face"


# ---- issue #18: progress, streaming, live view, queue ---------------------------------------------------------
@pytest.fixture(scope="module")
def long_speech(tmp_path_factory, speech) -> Path:
    from nerffs.examples import example_speech

    return example_speech(tmp_path_factory.mktemp("speech") / "long.wav",
                          "Hi there. I am a talking head, and this sentence lasts a few seconds.")


def test_generate_streams_segments_then_offers_the_mp4_and_animation(gradio_env, smoke_pipeline, long_speech):
    """The UI's Generate: progress as the pipeline's named steps, video segments (mp4 with sound) while frames
    render, then the finished mp4 and the animation to download; segments are removed once streamed."""
    import app
    from nerffs.examples import example_photo
    from nerffs.progress import STEPS
    from nerffs.render.video import read_video

    demo = app.build_demo(smoke_pipeline)
    fn = {f.api_name: f for f in demo.fns.values()}["generate_live"].fn
    bar, segments, streamed, finals = [], [], 0, []
    for live, download, animation, status in fn(str(example_photo()), str(long_speech),
                                                progress=lambda share, desc=None: bar.append((share, desc))):
        assert isinstance(status, str) and status
        if isinstance(live, str):
            assert not finals  # every segment comes before the finished video
            frames, _ = read_video(live)
            streamed += frames.shape[0]
            assert re.search(r"Audio: flac", ffmpeg_streams(Path(live)))
            segments.append(Path(live))
        if isinstance(download, str):
            finals.append((download, animation, status))
    assert len(segments) >= 2 and not any(p.exists() for p in segments) and not segments[0].parent.exists()
    (video, animation, status), = finals
    assert streamed == read_video(video)[0].shape[0] and status.startswith("Done")
    data = np.load(animation)
    assert data["exp"].shape == (streamed, 64) and data["cams"].shape[1:] == (4, 4)
    labels = [desc.split(" ")[0] for _, desc in bar]  # the steps' names, as in nerffs.progress.STEPS
    firsts = [text.split(" ")[0] for text, _ in STEPS.values()]
    assert [w for i, w in enumerate(labels) if i == 0 or labels[i - 1] != w] == [w for w in firsts if w in labels]
    assert any(desc.startswith("rendering frames ") for _, desc in bar)
    shares = [share for share, _ in bar]
    assert shares == sorted(shares) and shares[-1] == pytest.approx(1.0)


def test_live_view_follows_the_sliders_and_sets_the_camera(gradio_env, smoke_pipeline):
    import app
    from nerffs.app_support import camera_spec
    from nerffs.examples import example_photo

    demo = app.build_demo(smoke_pipeline, preview_views=2)
    fns = {f.api_name: f for f in demo.fns.values()}
    aligned, overlay, orbit, identity, view = fns["preview_session"].fn(str(example_photo()), 0, 0, 12, -6)
    assert aligned.shape == (128, 128, 3) and Path(orbit).is_file()
    np.testing.assert_array_equal(view, identity.view(12, -6))  # the session's identity at the sliders' camera
    np.testing.assert_array_equal(fns["live_view"].fn(identity, 12, -6), view)
    assert fns["live_view"].fn(None, 12, -6) == gr.skip()  # no face prepared yet: nothing to redraw
    mode, yaw, pitch = fns["use_view"].fn(12, -6)
    assert camera_spec(mode, yaw, pitch) == "fixed:yaw=12deg,pitch=-6deg"


def test_the_queue_bounds_renders(gradio_env, smoke_pipeline):
    """Renders share one queue of ``concurrency_limit`` workers (requests wait instead of being refused); the live
    view has a queue of its own, so a slider never waits for a video."""
    import app

    demo = app.build_demo(smoke_pipeline, concurrency_limit=2)
    fns = {f.api_name: f for f in demo.fns.values()}
    for name in ("preview", "preview_session", "generate", "generate_live", "faces"):
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == ("pipeline", 2), name
    assert fns["live_view"].concurrency_id == "views" and fns["live_view"].trigger_mode == "always_last"
    assert app.build_parser().parse_args([]).concurrency == 1


@pytest.mark.slow
def test_four_concurrent_users_are_all_answered_and_leave_no_temporary_files(gradio_env, smoke_pipeline, speech,
                                                                              tmp_path):
    """4 gradio_client users at once against one worker: every request is answered with a playable mp4 with
    sound, none is lost, no partial or segment file is left, and a sweep empties the workspace."""
    import app
    from nerffs.app_support import Workspace
    from nerffs.bench.app_load import run_users, workspace_files
    from nerffs.examples import example_photo

    work = Workspace(root=tmp_path, max_age=3600)
    demo = app.build_demo(smoke_pipeline, preview_views=2, workspace=work)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        records = run_users(url, users=4, requests=2, photo=example_photo(), audio=speech, timeout=300)
    finally:
        demo.close()
    assert [(r.user, r.index) for r in records] == [(u, i) for u in range(4) for i in range(2)]
    assert [r.error for r in records] == [None] * 8
    assert all(r.playable and r.frames > 5 for r in records)
    # one worker: the last of four simultaneous users waited at least one other's whole render in the queue
    assert max(r.queue_wait for r in records) >= min(r.latency - r.queue_wait for r in records)
    files = workspace_files(work.root)
    assert files["partial"] == 0 and files["segments"] == 0 and files["outputs"] >= 8
    assert work.sweep(max_age=0) == 8 and not [p for p in work.root.iterdir() if p.is_dir()]
    work.close()


def test_errors_name_the_uploaded_file_not_server_paths(served, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from nerffs.examples import example_photo

    _, client = served
    bad = tmp_path / "my speech.wav"
    bad.write_text("this is not audio")
    with pytest.raises(AppError) as info:
        client.predict(photo=handle_file(str(example_photo())), audio=handle_file(str(bad)), api_name="/generate")
    msg = str(info.value)
    assert "my speech.wav" in msg and "/tmp" not in msg and os.environ["GRADIO_TEMP_DIR"] not in msg, msg


@pytest.mark.slow
def test_sigterm_removes_the_temporary_folder(tmp_path):
    import signal
    import urllib.request

    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--models", "smoke", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()[-2000:]
                time.sleep(0.5)
        work = list(tmp_path.glob("nerffs-app-*"))
        assert len(work) == 1 and work[0].is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM
        assert not work[0].exists()
    finally:
        if proc.poll() is None:
            proc.kill()
