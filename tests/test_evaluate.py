"""evaluate: listing parsing and sharding (fast); end to end on two smoke samples, then resume (slow)."""
import csv
import json
import math

import pytest

from nerffs.errors import InputError
from nerffs.evaluate import EvalConfig, read_listing, run_evaluation, to_markdown
from nerffs.utils.shard import shard_info


def test_listing_csv_json_and_shards(tmp_path, monkeypatch):
    (tmp_path / "l.csv").write_text("image,audio,reference\na.png,a.wav,\nsub/b.png,b.wav,ref.mp4\n")
    samples = read_listing(tmp_path / "l.csv")
    assert [s.id for s in samples] == ["0000_a", "0001_b"]
    assert samples[1].image == (tmp_path / "sub" / "b.png").resolve() and samples[0].reference is None
    (tmp_path / "l.json").write_text(json.dumps([{"id": "x", "image": "a.png", "audio": "a.wav"}]))
    assert read_listing(tmp_path / "l.json")[0].id == "x"
    (tmp_path / "bad.csv").write_text("image\na.png\n")
    with pytest.raises(InputError, match="needs 'image' and 'audio'"):
        read_listing(tmp_path / "bad.csv")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert shard_info() == (1, 3)
    with pytest.raises(InputError):
        shard_info(2, 2)
    assert to_markdown([{"a": 1.0, "b": "x"}]).splitlines()[2] == "| 1.0000 | x |"


@pytest.mark.slow
def test_two_smoke_samples_end_to_end_and_resume(tmp_path, monkeypatch):
    from nerffs.examples import example_photo, example_speech

    try:
        example_speech(tmp_path / "s1.wav", "Hello.")
        example_speech(tmp_path / "s2.wav", "Good day.")
    except InputError as exc:
        pytest.skip(str(exc))
    photo = example_photo()
    with open(tmp_path / "eval.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["image", "audio"], [photo, "s1.wav"], [photo, "s2.wav"]])
    out = tmp_path / "out"
    cfg = EvalConfig(out_dir=out, max_frames=2, show_progress=False, rank=0, world_size=1)
    result = run_evaluation(tmp_path / "eval.csv", cfg)
    assert result.evaluated == ["0000_astronaut", "0001_astronaut"] and not result.skipped
    assert {p.name for p in result.files} == {"per_sample.csv", "per_sample.md", "aggregate.csv", "aggregate.md"}
    assert [r["condition"] for r in result.aggregate] == ["input", "flipped", "delta"]
    assert len(result.per_sample) == 6  # 2 samples x (input, flipped, delta)
    agg = {r["condition"]: r for r in result.aggregate}
    for key in ("cpbd", "dlib_id_cos", "proxy_r0", "fid"):
        assert key in agg["input"]
    assert math.isfinite(agg["input"]["fid"]) and math.isfinite(agg["delta"]["cpbd"])
    assert (out / "videos" / "0000_astronaut_flipped.mp4").is_file()
    assert "| condition |" in (out / "aggregate.md").read_text()

    # Resume: every sample is finished, so nothing is rendered (a pipeline that fails if used proves it).
    again = run_evaluation(tmp_path / "eval.csv", cfg, pipeline=object())
    assert again.evaluated == [] and again.skipped == ["0000_astronaut", "0001_astronaut"]
    assert again.aggregate[0]["fid"] == pytest.approx(result.aggregate[0]["fid"])
    # A non-zero rank evaluates its shard (already done) and does not merge.
    other = run_evaluation(tmp_path / "eval.csv", EvalConfig(out_dir=out, rank=1, world_size=2, show_progress=False))
    assert other.files == [] and other.skipped == ["0001_astronaut"]


def test_markdown_legend_and_notes():
    from nerffs.evaluate import _notes

    text = to_markdown([{"a": float("nan"), "notes": "a: no face | here"}], ["NaN: not computable"])
    assert text.splitlines()[2] == "| nan | a: no face / here |" and text.splitlines()[-1] == "- NaN: not computable"
    assert _notes({"dlib_id_cos": "no face", "dlib_id_l2": "no face", "cpbd": "flat"}) == \
        "dlib_id_cos, dlib_id_l2: no face; cpbd: flat"


@pytest.mark.slow
def test_bad_rows_are_recorded_with_their_reason_and_the_rest_goes_on(tmp_path):
    """Issue #16 item 6: a 0.1 s clip and a photo without a face used to stop the whole dataset with an error
    that did not name the row."""
    import numpy as np
    import soundfile
    from PIL import Image

    from nerffs.examples import example_photo, example_speech

    try:
        example_speech(tmp_path / "hello.wav", "Hello there.")
    except InputError as exc:
        pytest.skip(str(exc))
    soundfile.write(tmp_path / "blip.wav", 0.1 * np.sin(np.arange(1600) / 3).astype(np.float32), 16000)
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "wall.png")
    with open(tmp_path / "eval.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["image", "audio", "id"], [example_photo(), "hello.wav", "good"],
                                  [example_photo(), "blip.wav", "short_clip"], ["wall.png", "hello.wav", "no_face"]])
    out = tmp_path / "out"
    cfg = EvalConfig(out_dir=out, max_frames=2, show_progress=False, rank=0, world_size=1, flip=False)
    result = run_evaluation(tmp_path / "eval.csv", cfg)
    assert result.evaluated == ["good"] and set(result.failed) == {"short_clip", "no_face"}
    assert "at least 4 frames" in result.failed["short_clip"] and "no face found" in result.failed["no_face"]
    rows = {(r["id"], r["condition"]): r for r in result.per_sample}
    assert rows[("no_face", "failed")]["notes"] == result.failed["no_face"]
    good = rows[("good", "input")]
    nan = [k for k, v in good.items() if isinstance(v, float) and math.isnan(v)]
    assert nan and all(k in good["notes"] for k in nan)  # every NaN is explained (smoke frames show no face)
    assert result.aggregate[0]["n"] == 1
    failures = (out / "failures.md").read_text()
    assert "short_clip" in failures and "no_face" in failures and str(tmp_path / "blip.wav") in failures
    assert "NaN: the metric could not be computed" in (out / "per_sample.md").read_text()
    assert (out / "failures.csv").is_file() and out / "failures.md" in result.files
    # A rerun retries the failed rows only (the good one is finished).
    again = run_evaluation(tmp_path / "eval.csv", cfg)
    assert again.skipped == ["good"] and set(again.failed) == {"short_clip", "no_face"}
