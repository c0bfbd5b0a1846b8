"""Batch jobs: CSV parsing, a failed row that does not stop the others, resumable reruns, sharding."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nerffs.audio.speech import synthesize_speech
from nerffs.errors import InputError
from nerffs.examples import example_photo
from nerffs.jobs import read_jobs, run_jobs
from scripts.talk import main as talk_main

ROOT = Path(__file__).resolve().parents[2]


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


def test_cli_jobs_refuses_single_job_arguments_and_names_the_bad_row(inputs, capsys):
    path = _write(inputs, ["image,audio,output,exp_scale", "face.png,hi.wav,out/a.mp4,", "face.png,hi.wav,out/b.mp4,-1"])
    assert talk_main(["--jobs", str(path), "--out", "x.mp4"]) == 2
    assert "--jobs takes the photos" in capsys.readouterr().err
    assert talk_main(["--jobs", str(path), "--models", "smoke", "--quiet"]) == 1  # before any model loads
    err = capsys.readouterr().err
    assert "jobs.csv row 3:" in err and "exp" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_options_apply_to_every_row_and_a_changed_row_renders_again(inputs, tmp_path):
    lines = ["image,audio,output,camera", f"{inputs / 'face.png'},{inputs / 'hi.wav'},{tmp_path / 'a.mp4'},",
             f"{inputs / 'face.png'},{inputs / 'hi.wav'},{tmp_path / 'b.mp4'},fixed:yaw=0.2"]
    path = _write(tmp_path, lines)
    assert talk_main(["--jobs", str(path), "--models", "smoke", "--quiet", "--exp-scale", "1.2"]) == 0
    records = json.loads((tmp_path / "jobs.status" / "summary.json").read_text())["records"]
    assert [r["settings"]["options"] for r in records] == [{"exp_scale": 1.2},
                                                           {"exp_scale": 1.2, "camera": "fixed:yaw=0.2"}]
    first = (tmp_path / "b.mp4").stat().st_mtime_ns
    path.write_text(path.read_text().replace("fixed:yaw=0.2", "fixed:yaw=0.3"))
    assert talk_main(["--jobs", str(path), "--models", "smoke", "--quiet", "--exp-scale", "1.2"]) == 0
    again = json.loads((tmp_path / "jobs.status" / "row-00000.json").read_text())
    assert again["settings"]["options"] == {"exp_scale": 1.2}  # row 0 unchanged: kept
    assert (tmp_path / "b.mp4").stat().st_mtime_ns != first  # row 1 changed: rendered again


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_render_every_row_exactly_once(inputs, tmp_path):
    outs = [tmp_path / f"clip{i}.mp4" for i in range(4)]
    lines = ["image,audio,output"] + [f"{inputs / 'face.png'},{inputs / 'hi.wav'},{o}" for o in outs]
    path = _write(tmp_path, lines)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "scripts.talk", "--jobs", str(path), "--models", "smoke"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stdout + done.stderr
    for out in outs:
        assert out.is_file() and log.count(f"nerffs.pipeline: wrote {out} ") == 1  # rendered exactly once
    summary = json.loads((tmp_path / "jobs.status" / "summary.json").read_text())
    assert (summary["rows"], summary["ok"]) == (4, 4)
    assert [(r["row"], r["rank"]) for r in summary["records"]] == [(0, 0), (1, 1), (2, 0), (3, 1)]
