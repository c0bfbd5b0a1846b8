"""The demo in a real browser: headless Debian chromium (driven by selenium) uploads the astronaut photo and an
espeak-ng recording, presses Generate and checks that the streamed video really plays (decoded frames, the
audio's duration, time advancing after play()), that it starts playing while the job still renders (before the
finished mp4 is offered), and that the finished mp4 is offered for download; a screenshot is saved under tmp.

Runs where /usr/bin/chromium and chromedriver exist (CI: apt-get install chromium chromium-driver; pip install
selenium); skips with the reason otherwise. No network beyond 127.0.0.1 (selenium-manager is never used).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tests.test_app import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
_missing = [n for n, v in (("chromium", CHROMIUM), ("chromedriver (chromium-driver)", DRIVER)) if v is None]
try:
    import gradio  # noqa: F401
    import selenium  # noqa: F401
except ImportError as exc:
    _missing.append(f"python package {exc.name}")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(_missing), reason=f"browser test needs {', '.join(_missing)}")]


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import app
    from nerffs.pipeline import TalkingHeadPipeline

    demo = app.build_demo(TalkingHeadPipeline.from_pretrained("smoke"), preview_views=4)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="nerffs-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,1600", f"--user-data-dir={profile}",
                 "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _upload(driver, elem_id: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))


def _generate(driver, page_url: str, wav: Path) -> None:
    """Open the demo, upload the astronaut and ``wav``, press Generate."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from nerffs.examples import example_photo

    driver.get(page_url)
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#generate-button"))
    assert "SMOKE" in driver.find_element(By.ID, "weights-banner").text
    _upload(driver, "photo", example_photo())
    _upload(driver, "audio", wav)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img") and d.find_elements(By.CSS_SELECTOR,
                                                                                            "#audio audio"))
    driver.find_element(By.ID, "generate-button").click()


def _speech(tmp_path: Path, text: str) -> Path:
    from nerffs.audio.speech import find_espeak
    from nerffs.examples import example_speech

    if find_espeak() is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return example_speech(tmp_path / "speech.wav", text)


# The page's state: the streamed video element, the download link of the finished mp4 and the status line.
_STATE = """
const v = document.querySelector('#output-video video');
const links = Array.from(document.querySelectorAll('#download-video a[href]')).map(a => a.href);
const status = (document.querySelector('#job-status') || {}).innerText || '';
if (v && v.paused && v.readyState >= 2 && !v.ended) { v.muted = true; v.play().catch(() => {}); }
return {video: v ? {ready: v.readyState, time: v.currentTime, error: v.error ? v.error.code : null} : null,
        download: links.filter(h => h.includes('.mp4')), status: status};
"""


def test_browser_streams_the_video_before_the_job_ends(page_url, browser, tmp_path):
    """Several seconds of speech: the streamed video is playing (time advancing, enough data) while the job still
    renders, i.e. before the finished mp4 is offered; then the finished mp4 is offered."""
    from selenium.webdriver.support.ui import WebDriverWait

    wav = _speech(tmp_path, "Hi there. I am a talking head. " * 6)
    _generate(browser, page_url, wav)

    def playing(d):
        state = d.execute_script(_STATE)
        video = state["video"]
        assert not (video and video["error"]), f"the browser cannot decode the stream (MediaError {video})"
        if state["download"] or (video and video["time"] > 0 and video["ready"] >= 3):
            return state
        return None

    first = WebDriverWait(browser, 240, poll_frequency=0.2).until(playing)
    assert first["video"] is not None and first["video"]["time"] > 0, first  # it played ...
    assert not first["download"] and not first["status"].startswith("Done"), first  # ... before the job ended
    last = WebDriverWait(browser, 240, poll_frequency=0.5).until(
        lambda d: (lambda s: s if s["download"] else None)(d.execute_script(_STATE)))
    assert "Done" in last["status"] and last["download"][0].endswith(".mp4")
    browser.save_screenshot(str(tmp_path / "app_browser_stream.png"))


def test_browser_generates_a_video(page_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from nerffs.render.video import ffmpeg_exe, read_video

    wav = _speech(tmp_path, "Hi there.")
    _generate(browser, page_url, wav)
    links = WebDriverWait(browser, 240).until(lambda d: d.execute_script(_STATE)["download"])
    _assert_plays(browser, wav)
    # the finished mp4 offered for download: H.264 + AAC, the same frames as streamed
    video = tmp_path / "download.mp4"
    video.write_bytes(urllib.request.urlopen(links[0], timeout=30).read())
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True).stderr
    assert re.search(r"Video: h264", info) and re.search(r"Audio: aac", info), info
    assert read_video(video)[0].shape[1:] == (128, 128, 3)
    shot = tmp_path / "app_browser.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    # the preview ran first: aligned face, landmark overlay and the live view of the identity are shown
    for elem_id in ("aligned", "landmarks", "live-view"):
        assert browser.find_elements(By.CSS_SELECTOR, f"#{elem_id} img"), elem_id


_PLAY = """
const video = arguments[0], done = arguments[arguments.length - 1];
video.muted = true;  // autoplay policy: a muted element may play without a user gesture
video.currentTime = 0;
video.play().then(
    () => setTimeout(() => done({time: video.currentTime, paused: video.paused, ended: video.ended}), 500),
    (err) => done({error: String(err)}));
"""


def _assert_plays(driver, wav: Path) -> None:
    """The streamed output video decodes (readyState >= HAVE_CURRENT_DATA), lasts as long as the speech (0.2 s of
    slack: the stream ends with the encoder's last audio frames) and its clock advances once play() is called."""
    import soundfile
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    video = driver.find_element(By.CSS_SELECTOR, "#output-video video")
    state = WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "const v = arguments[0]; return v.error ? {error: v.error.code} : "
        "(v.readyState >= 2 ? {ready: v.readyState, duration: v.duration, width: v.videoWidth} : null)", video))
    assert "error" not in state, f"the browser cannot decode the video (MediaError {state.get('error')})"
    info = soundfile.info(str(wav))
    assert abs(state["duration"] - info.frames / info.samplerate) <= 0.2, (state, info.duration)
    assert state["width"] == 128  # the smoke generator's frames
    driver.set_script_timeout(30)
    played = driver.execute_async_script(_PLAY, video)
    assert "error" not in played, played
    assert played["time"] > 0.1 and (not played["paused"] or played["ended"]), played


def test_browser_bad_upload_shows_the_error(page_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a photo")
    browser.get(page_url)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#generate-button"))
    _upload(browser, "photo", bad)
    browser.find_element(By.ID, "generate-button").click()
    text = WebDriverWait(browser, 60).until(
        lambda d: next((t for t in [d.find_element(By.TAG_NAME, "body").text]
                        if "not a readable image" in t or "Invalid file type" in t), None))
    browser.save_screenshot(str(tmp_path / "app_browser_error.png"))
    assert "Traceback" not in text
