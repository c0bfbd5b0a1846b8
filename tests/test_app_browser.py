"""The demo in a real browser: headless Debian chromium (driven by selenium) uploads the astronaut photo and an
espeak-ng recording, presses Generate and checks that the video it shows really plays (decoded frames, the
audio's duration, time advancing after play()); a screenshot is saved under tmp.

Runs where /usr/bin/chromium and chromedriver exist (CI: apt-get install chromium chromium-driver; pip install
selenium); skips with the reason otherwise. No network beyond 127.0.0.1 (selenium-manager is never used).
"""
from __future__ import annotations

import os
import shutil
import tempfile
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
                 "--disable-sync", "--window-size=1280,1600", f"--user-data-dir={profile}"):
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


def test_browser_generates_a_video(page_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from nerffs.audio.speech import find_espeak
    from nerffs.examples import example_photo, example_speech

    if find_espeak() is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = example_speech(tmp_path / "hi.wav", "Hi there.")
    browser.get(page_url)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#generate-button"))
    assert "SMOKE" in browser.find_element(By.ID, "weights-banner").text
    _upload(browser, "photo", example_photo())
    _upload(browser, "audio", wav)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img") and d.find_elements(By.CSS_SELECTOR,
                                                                                            "#audio audio"))
    browser.find_element(By.ID, "generate-button").click()

    def video_src(d):
        for el in d.find_elements(By.CSS_SELECTOR, "#output-video video"):
            if el.get_attribute("src"):
                return el.get_attribute("src")
        return None

    src = WebDriverWait(browser, 240).until(video_src)
    assert src.endswith(".mp4") or "/file=" in src or "gradio_api" in src, src
    _assert_plays(browser, wav)
    shot = tmp_path / "app_browser.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    # the preview ran first: aligned face and landmark overlay are shown
    assert browser.find_elements(By.CSS_SELECTOR, "#aligned img") and browser.find_elements(By.CSS_SELECTOR,
                                                                                           "#landmarks img")


_PLAY = """
const video = arguments[0], done = arguments[arguments.length - 1];
video.muted = true;  // autoplay policy: a muted element may play without a user gesture
video.currentTime = 0;
video.play().then(
    () => setTimeout(() => done({time: video.currentTime, paused: video.paused, ended: video.ended}), 500),
    (err) => done({error: String(err)}));
"""


def _assert_plays(driver, wav: Path) -> None:
    """The output video decodes (readyState >= HAVE_CURRENT_DATA), lasts as long as the speech (one frame of
    slack) and its clock advances once play() is called."""
    import soundfile
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    video = driver.find_element(By.CSS_SELECTOR, "#output-video video")
    state = WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "const v = arguments[0]; return v.error ? {error: v.error.code} : "
        "(v.readyState >= 2 ? {ready: v.readyState, duration: v.duration, width: v.videoWidth} : null)", video))
    assert "error" not in state, f"the browser cannot decode the video (MediaError {state.get('error')})"
    info = soundfile.info(str(wav))
    assert abs(state["duration"] - info.frames / info.samplerate) <= 0.1, (state, info.duration)
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
