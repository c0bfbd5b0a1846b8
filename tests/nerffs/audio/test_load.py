"""load_audio: every accepted format -> the same 16 kHz mono signal; clear one-line errors (spec 1.1)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import soundfile

from nerffs.audio import AudioConfig, AudioError, decode_audio, load_audio
from nerffs.audio import load as load_module

# (file name, ffmpeg output options, allowed length difference in 16 kHz samples, minimum correlation).
# Lossless codecs and the gapless-aware lossy ones decode to exactly the input length. AAC in MP4 trims its
# encoder delay with an edit list, up to a few samples. Raw ADTS AAC cannot signal the delay, so it keeps
# up to 2048 extra samples at the source rate (< 1500 at 16 kHz).
FORMATS = [
    ("stereo44k.wav", ("-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le"), 0, 0.999),
    ("speech.flac", ("-c:a", "flac"), 0, 0.999),
    ("speech.mp3", ("-c:a", "libmp3lame", "-b:a", "128k"), 0, 0.95),
    ("speech.ogg", ("-c:a", "libvorbis", "-q:a", "5"), 0, 0.95),
    ("speech.opus", ("-c:a", "libopus", "-b:a", "64k"), 0, 0.9),
    ("speech.m4a", ("-c:a", "aac", "-b:a", "128k"), 64, 0.95),
    ("speech.aac", ("-c:a", "aac", "-b:a", "128k", "-f", "adts"), 1500, 0.95),
]


def best_correlation(x: np.ndarray, ref: np.ndarray, max_lag: int = 1600) -> float:
    """Largest correlation of x with ref over lags in [-max_lag, max_lag], normalised by both norms."""
    from scipy.signal import correlate

    full = correlate(x.astype(np.float64), ref.astype(np.float64), mode="full", method="fft")
    zero = len(ref) - 1  # index of lag 0
    window = full[max(zero - max_lag, 0):zero + max_lag + 1]
    return float(window.max() / (np.linalg.norm(x) * np.linalg.norm(ref) + 1e-12))


@pytest.fixture(scope="module")
def reference(speech_wav: Path) -> np.ndarray:
    return load_audio(speech_wav)


def test_reference_speech_is_16k_mono(speech_wav: Path, reference: np.ndarray) -> None:
    native_len = soundfile.info(str(speech_wav)).frames  # 22.05 kHz
    assert reference.dtype == np.float32 and reference.ndim == 1
    assert abs(len(reference) - native_len * 16000 / 22050) <= 1
    assert np.abs(reference).max() > 0.05  # speech, not silence


@pytest.mark.parametrize("name,options,tolerance,min_corr", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_loads_to_the_same_signal(tmp_path: Path, speech_wav: Path, reference: np.ndarray, convert,
                                               name: str, options: tuple[str, ...], tolerance: int,
                                               min_corr: float) -> None:
    path = convert(speech_wav, tmp_path / name, *options)
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - len(reference)) <= tolerance, (name, len(wav), len(reference))
    assert best_correlation(wav, reference) >= min_corr


def test_video_sound_track_loads(tmp_path: Path, speech_wav: Path, reference: np.ndarray, ffmpeg_exe: str) -> None:
    import subprocess

    video = tmp_path / "talk.mp4"
    subprocess.run([ffmpeg_exe, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=25",
                    "-i", str(speech_wav), "-map", "0:v", "-map", "1:a", "-shortest", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", str(video)], check=True, capture_output=True)
    wav = load_audio(video)
    assert abs(len(wav) - len(reference)) <= 1600
    assert best_correlation(wav, reference) > 0.9


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # librosa's audioread import, not our code
def test_matches_librosa_load(tmp_path: Path, speech_wav: Path, convert) -> None:
    """Same signal as NFS's librosa.load(path, sr=16000): channel mean then soxr_hq resampling (spec 1.1)."""
    import librosa

    path = convert(speech_wav, tmp_path / "stereo48k.wav", "-ar", "48000", "-ac", "2")
    expected, _ = librosa.load(str(path), sr=16000)
    np.testing.assert_allclose(load_audio(path), expected, atol=1e-6)


def test_channels_are_averaged_without_rescaling(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    left, right = 0.8 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1000 * t)
    path = tmp_path / "two.wav"
    soundfile.write(str(path), np.stack([left, right], 1).astype(np.float32), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), ((left + right) / 2).astype(np.float32), atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 96000])
def test_any_rate_and_channel_count(tmp_path: Path, rate: int) -> None:
    data = np.random.default_rng(0).uniform(-0.5, 0.5, (rate * 2, 6)).astype(np.float32)  # 2 s, 5.1
    path = tmp_path / f"six_{rate}.wav"
    soundfile.write(str(path), data, rate, subtype="FLOAT")
    wav = load_audio(path)
    assert wav.shape == (32000,) and wav.dtype == np.float32


def test_silence_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    soundfile.write(str(path), np.zeros(22050, np.int16), 22050)
    wav = load_audio(path)
    assert wav.shape == (16000,) and not wav.any()


def test_decode_keeps_native_rate_and_channels(tmp_path: Path) -> None:
    path = tmp_path / "native.flac"
    soundfile.write(str(path), np.zeros((4410, 2), np.int16), 44100)
    data, rate = decode_audio(path)
    assert data.shape == (4410, 2) and rate == 44100


def test_soundfile_fallback_without_ffmpeg(tmp_path: Path, speech_wav: Path, reference: np.ndarray, convert,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    m4a = convert(speech_wav, tmp_path / "x.m4a", "-c:a", "aac")
    monkeypatch.setattr(load_module, "find_ffmpeg", lambda explicit=None: None)
    np.testing.assert_allclose(load_audio(speech_wav), reference, atol=1e-6)
    with pytest.raises(AudioError, match="install ffmpeg"):
        load_audio(m4a)


# ----------------------------------------------------------------------------------------------- errors
def assert_one_line(err: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not found") as err:
        load_audio(tmp_path / "nope.wav")
    assert_one_line(err)
    with pytest.raises(AudioError, match="not a file"):
        load_audio(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as err:
        load_audio(path)
    assert_one_line(err)


@pytest.mark.parametrize("content", [b"this is a text file, not audio\n" * 20,
                                     bytes(random.Random(1).randrange(256) for _ in range(4000))],
                         ids=["text", "random_bytes"])
def test_non_audio_file(tmp_path: Path, content: bytes, ffmpeg_exe: str) -> None:
    path = tmp_path / "fake.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="not a recognised audio file") as err:
        load_audio(path)
    assert_one_line(err)


def test_file_without_audio_stream(tmp_path: Path, ffmpeg_exe: str) -> None:
    import subprocess

    image = tmp_path / "frame.png"
    subprocess.run([ffmpeg_exe, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=32x32", "-frames:v",
                    "1", str(image)], check=True, capture_output=True)
    with pytest.raises(AudioError, match="no audio stream") as err:
        load_audio(image)
    assert_one_line(err)


@pytest.mark.parametrize("name,options,damage", [
    ("cut.m4a", ("-c:a", "aac"), "truncate"),       # moov atom lost
    ("bad.flac", ("-c:a", "flac"), "garble_head"),  # stream header destroyed
    ("bad.mp3", ("-c:a", "libmp3lame"), "garble_middle"),
])
def test_corrupt_file(tmp_path: Path, speech_wav: Path, convert, name: str, options: tuple[str, ...],
                      damage: str) -> None:
    path = convert(speech_wav, tmp_path / name, *options)
    data = bytearray(path.read_bytes())
    rng = random.Random(0)
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        start = 8 if damage == "garble_head" else len(data) // 2
        for i in range(start, start + 400):
            data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="corrupt") as err:
        load_audio(path)
    assert_one_line(err)


def test_header_only_wav_has_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "header.wav"
    soundfile.write(str(path), np.zeros(0, np.int16), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path)


def test_shorter_than_one_video_frame(tmp_path: Path) -> None:
    path = tmp_path / "blip.wav"
    soundfile.write(str(path), np.full(639, 1000, np.int16), 16000)  # 639 < 640 samples = one frame at 25 fps
    with pytest.raises(AudioError, match="shorter than one video frame") as err:
        load_audio(path)
    assert_one_line(err)
    soundfile.write(str(path), np.full(640, 1000, np.int16), 16000)
    assert load_audio(path).shape == (640,)


def test_longer_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    soundfile.write(str(path), np.zeros(16000 * 3, np.int16), 16000)
    with pytest.raises(AudioError, match="longer than the limit of 2 s") as err:
        load_audio(path, AudioConfig(max_seconds=2.0))
    assert_one_line(err)
    assert load_audio(path, AudioConfig(max_seconds=3.0)).shape == (48000,)


def test_non_finite_samples(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    data = np.zeros(16000, np.float32)
    data[100] = np.nan
    soundfile.write(str(path), data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(path)


def test_bad_ffmpeg_option() -> None:
    with pytest.raises(AudioError, match="AudioConfig.ffmpeg"):
        load_module.find_ffmpeg("/definitely/not/ffmpeg")


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"sample_rate": -1}, {"max_seconds": float("nan")},
                                    {"ref_momentum": 1.5}, {"blink": "sometimes"}, {"fmax": 9000.0},
                                    {"stft_pad_mode": "edge"}])
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(AudioError, match="AudioConfig"):
        AudioConfig(**kwargs)
