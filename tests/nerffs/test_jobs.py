"""Batch jobs: CSV parsing, a failed row that does not stop the others, resumable reruns, sharding."""
from __future__ import annotations

import json
import shutil

import pytest

from nerffs.audio.speech import synthesize_speech
from nerffs.errors import InputError
from nerffs.examples import example_photo
from nerffs.jobs import read_jobs, run_jobs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    shutil.copy(example_photo(), root / "face.png")
    synthesize_speech(root / "hi.wav", text="Hi.")
    (root / "notes.txt").write_text("not a photo")
    return root


def _write(root, lines):
    path = root / "jobs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_jobs_parses_options_and_names_bad_rows(inputs):
    path = _write(inputs, ["image,audio,output,exp_scale,camera,blink,seed",
                           "face.png,hi.wav,out/a.mp4,1.2,,random,3"])
    job = read_jobs(path)[0]
    assert job.options == {"exp_scale": 1.2, "blink": "random"} and job.seed == 3
    assert job.image == inputs / "face.png" and job.output == (inputs / "out" / "a.mp4").resolve()
    with pytest.raises(InputError, match="unknown column"):
        read_jobs(_write(inputs, ["image,audio,output,expscale", "face.png,hi.wav,a.mp4,1"]))
    with pytest.raises(InputError, match="row 2: column 'exp_scale' needs a float"):
        read_jobs(_write(inputs, ["image,audio,output,exp_scale", "face.png,hi.wav,a.mp4,big"]))
    with pytest.raises(InputError, match="written by an earlier row"):
        read_jobs(_write(inputs, ["image,audio,output", "face.png,hi.wav,a.mp4", "face.png,hi.wav,a.mp4"]))


@pytest.mark.slow
def test_failed_row_is_recorded_the_rest_render_and_a_rerun_skips_them(inputs):
    from nerffs.pipeline import TalkingHeadPipeline

    path = _write(inputs, ["image,audio,output,camera", "face.png,hi.wav,out/a.mp4,",
                           "notes.txt,hi.wav,out/b.mp4,", "face.png,hi.wav,out/c.mp4,fixed:yaw=5deg"])
    pipe = TalkingHeadPipeline.from_pretrained("smoke")
    first = run_jobs(pipe, path, show_progress=False)
    assert sorted(first.rendered) == [0, 2] and first.failed == [1]
    summary = json.loads((inputs / "jobs.status" / "summary.json").read_text())
    assert (summary["ok"], summary["failed"]) == (2, 1)
    assert "notes.txt" in summary["records"][1]["reason"] or "image" in summary["records"][1]["reason"]
    assert (inputs / "out" / "a.mp4").is_file() and (inputs / "out" / "c.mp4").is_file()
    again = run_jobs(pipe, path, show_progress=False)
    assert sorted(again.skipped) == [0, 2] and again.rendered == [] and again.failed == [1]


@pytest.mark.slow
def test_two_shards_render_every_row_exactly_once(inputs, tmp_path):
    from nerffs.pipeline import TalkingHeadPipeline

    lines = ["image,audio,output"] + [f"{inputs / 'face.png'},{inputs / 'hi.wav'},{tmp_path / f'{i}.mp4'}"
                                      for i in range(3)]
    path = _write(tmp_path, lines)
    pipe = TalkingHeadPipeline.from_pretrained("smoke")
    one = run_jobs(pipe, path, rank=1, world_size=2, show_progress=False)
    zero = run_jobs(pipe, path, rank=0, world_size=2, show_progress=False)
    assert one.rendered == [1] and zero.rendered == [0, 2] and one.summary is None
    assert [r["row"] for r in zero.summary] == [0, 1, 2] and all(r["ok"] for r in zero.summary)
