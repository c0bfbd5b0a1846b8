"""Make a talking-head video from one portrait photo and one speech recording.

Examples:
    python -m scripts.talk photo.jpg speech.wav --out talk.mp4          # official weights if present, else offline
    python -m scripts.talk photo.jpg speech.m4a --out talk.mp4 --camera orbit:yaw=0.4,pitch=0.1,period=4
    python -m scripts.talk photo.jpg speech.wav --out talk.mp4 --transcript "what is said" --preview-sheet
    python -m scripts.talk photo.jpg speech.wav --out talk.mp4 --models smoke --watermark
    python -m scripts.talk --example --out outputs/talking_head.mp4      # astronaut + espeak-ng speech
    python -m scripts.talk --jobs jobs.csv --models offline              # one clip per CSV row (resumable)
    torchrun --nproc_per_node 2 -m scripts.talk --jobs jobs.csv          # the rows shared by two processes

Jobs file (--jobs): a CSV with the columns image, audio, output (relative to the CSV's folder), optional
transcript and seed, and any option as a column named as in PipelineConfig (camera, exp_scale, pose, ...; an
empty cell keeps the value given on the command line, else the default). Row status, summary.csv and
summary.json go to JOBS.status/ (or --jobs-status); a failed row is recorded and the others go on; a rerun
skips the rows already done.

Camera specs: input (default) | fixed:yaw=0.3,pitch=-0.1 | orbit:yaw=..,pitch=..,period=.. |
keyframes:T:YAW:PITCH;T:YAW:PITCH.. | driving:FOLDER_OR_VIDEO. Angles in radians (or add 'deg').

Model sets (--models): auto (default) uses the official weights when all are present (see
`python -m scripts.download_weights --check`), else the offline demo models; offline = a radiance field fitted
to the photo with phone-driven mouth motion, built from packaged models only (no download); smoke = seeded
random networks (proves the plumbing, shows no face); or a weights directory. The log and the video's metadata
say which set made the video.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nerffs.config import get_config
from nerffs.examples import EXAMPLE_TEXT, example_photo, example_speech
from nerffs.jobs import prepare_jobs, run_jobs
from nerffs.options import check_options, check_paths, flag_dest, flag_name
from nerffs.pipeline import TalkingHeadPipeline
from nerffs.utils.cli import run_cli
from nerffs.utils.device import check_device

CLI_FIELDS = ("camera", "exp_scale", "ref_momentum", "mask_window", "blink", "deform_mode", "batch_size", "paste_back",
              "watermark", "frames_dir", "resume", "source", "truncation_psi", "expression", "preview_sheet", "pose",
              "pose_style", "pose_scale", "head_motion", "blink_strength", "restart", "face_index", "max_size",
              "save_coefficients", "save_control_points")
"""The PipelineConfig fields this CLI sets; each flag is ``nerffs.options.flag_name(field)``."""
FLAG_NAMES = {field: flag_name(field) for field in CLI_FIELDS}
"""PipelineConfig field -> the flag that sets it (errors name options the way the user typed them)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.talk", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path, nargs="?", help="portrait photo (jpg/png/webp/...)")
    p.add_argument("audio", type=Path, nargs="?", help="speech recording (wav/mp3/m4a/flac/ogg/...)")
    p.add_argument("--example", action="store_true",
                   help="use the bundled example inputs: the public-domain astronaut photo and espeak-ng speech")
    p.add_argument("--out", type=Path, default=None, help="output .mp4 (written atomically); not with --jobs")
    p.add_argument("--jobs", type=Path, default=None, metavar="CSV",
                   help="render every row of a jobs file (see above) instead of one IMAGE and AUDIO")
    p.add_argument("--jobs-status", type=Path, default=None, metavar="DIR",
                   help="where --jobs writes row status and the summary (default: JOBS.status beside the CSV)")
    p.add_argument("--models", "--weights", dest="weights", default="auto", metavar="SET",
                   help="model set: 'auto' (default: official if complete, else offline), 'offline', 'smoke', or a "
                        "weights directory")
    p.add_argument("--transcript", default=None,
                   help="the words spoken in AUDIO, when known (the offline models align them to the audio)")
    p.add_argument("--preview-sheet", action="store_true", default=None,
                   help="also write NAME_sheet.png beside the video: frames plus an orbit of the identity")
    p.add_argument("--camera", default=None, help="camera spec (see above); default 'input'")
    p.add_argument("--exp-scale", type=float, default=None, help="expression scale l_exp (paper 1.5)")
    p.add_argument("--momentum", type=float, default=None, help="expression momentum a_m (paper 0.5)")
    p.add_argument("--mask-window", type=int, default=None, help="mouth-mask averaging window n (paper 7)")
    p.add_argument("--blink", choices=["none", "random"], default=None,
                   help="eye blinks (default: none with official weights, as NFS; random with the offline models)")
    p.add_argument("--blink-strength", type=float, default=None, help="scale of every blink (0..2, default 1)")
    p.add_argument("--pose", choices=["none", "audio", "driving"], default=None,
                   help="head motion from the audio (Audio2Pose, or speech-driven nods and drift without its "
                        "weights), from the driving clip, or none (default: none with official weights, as NFS; "
                        "audio with the offline models)")
    p.add_argument("--pose-style", type=int, default=None, help="Audio2Pose pose style 0..45 (default 0)")
    p.add_argument("--pose-scale", type=float, default=None, help="scale of the head motion (0 = still, default 1)")
    p.add_argument("--head-motion", choices=["deform", "camera"], default=None,
                   help="render head motion by deformation (the head turns, the body stays; default) or by "
                        "turning the camera (the whole scene turns)")
    p.add_argument("--deform", choices=["world", "official"], default=None,
                   help="sample matching: world (view-consistent, default) or official (frontal index reuse)")
    p.add_argument("--expression", choices=["audio", "driving"], default=None,
                   help="expressions from the audio (default) or from the driving clip (needs --camera driving:CLIP; "
                        "then AUDIO may be '-' for a silent video)")
    p.add_argument("--identity", choices=["auto", "pti", "sample"], default=None,
                   help="identity from PTI inversion of the photo, or a sampled latent")
    p.add_argument("--trunc", type=float, default=None, help="truncation psi of a sampled identity (0.7)")
    p.add_argument("--batch", type=int, default=None, help="frames per generator call")
    p.add_argument("--paste-back", action="store_true", default=None, help="paste the face into the photo")
    p.add_argument("--watermark", action="store_true", default=None, help="visible 'synthetic' mark")
    p.add_argument("--frames-dir", default=None, help="also keep PNG frames here (enables --resume), with the job's "
                   "manifest job.json")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue the frames in --frames-dir (refused when they belong to another job: other "
                        "inputs, options or models)")
    p.add_argument("--restart", action="store_true", default=None,
                   help="discard the frames in --frames-dir and start over")
    p.add_argument("--face-index", type=int, default=None, metavar="N",
                   help="which face of the photo to animate, 0 = the best ranked (confident, large, frontal); the "
                        "log lists the faces found")
    p.add_argument("--generator", default=None, choices=["256", "512", "1024"],
                   help="official StyleNeRF generator file (default 512, the one download_weights fetches); "
                        "only for the official weights")
    p.add_argument("--max-size", type=int, default=None, metavar="PX",
                   help="with --paste-back: longest side of the video (default 1920; the photo is scaled down "
                        "before pasting and encoding); 0 keeps the photo's size")
    p.add_argument("--save-coefficients", default=None, metavar="PATH.npz",
                   help="also write the animation: exp [T,64], cams [T,4,4], fps, pose [T,3] when the head moves")
    p.add_argument("--save-control-points", action="store_true", default=None,
                   help="add the driven control points [T,N,2] to --save-coefficients (large)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    return p


def options_from_args(ns: argparse.Namespace) -> dict:
    """The flags the user gave, as flat PipelineConfig overrides (flags left out keep the pipeline's defaults)."""
    options = {field: getattr(ns, flag_dest(field)) for field in CLI_FIELDS if getattr(ns, flag_dest(field)) is not None}
    if options.get("max_size") == 0:  # --max-size 0: keep the photo's size
        options["max_size"] = None
    return options


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    options = options_from_args(ns)
    if ns.jobs is not None:
        if ns.example or ns.image is not None or ns.out is not None:
            print("error: --jobs takes the photos, recordings and outputs from its CSV: drop IMAGE, AUDIO, --out "
                  "and --example", file=sys.stderr)
            return 2
        return run_cli(lambda: _jobs(ns, options), quiet=ns.quiet)
    if ns.example == (ns.image is not None or ns.audio is not None) or (ns.image is None) != (ns.audio is None):
        print("error: give an IMAGE and an AUDIO file, or --example (and neither)", file=sys.stderr)
        return 2
    if ns.out is None:
        print("error: give --out PATH.mp4 (where the video is written)", file=sys.stderr)
        return 2
    return run_cli(lambda: _talk(ns, options), quiet=ns.quiet)


def _jobs(ns: argparse.Namespace, options: dict) -> int:
    """Render this process's share of a jobs file; exit 1 when any row failed (rank 0 sees them all)."""
    check_device(ns.device)
    check_options(options, get_config("official"), FLAG_NAMES)
    rows = prepare_jobs(ns.jobs, options)  # every row checked before any model loads
    pipe = TalkingHeadPipeline.from_pretrained(ns.weights, device=ns.device, seed=ns.seed, generator=ns.generator)
    status = ns.jobs_status or ns.jobs.with_suffix(".status")
    result = run_jobs(pipe, rows, status, show_progress=not ns.quiet)
    if result.summary is not None:
        failed = [r for r in result.summary if not r.get("ok")]
        print(f"{len(result.summary) - len(failed)} of {len(result.summary)} rows ok; summary in "
              f"{status / 'summary.csv'}")
        return 1 if failed else 0
    return 1 if result.failed else 0


def _talk(ns: argparse.Namespace, options: dict) -> int:
    """Check every option and path in the user's words, then load the models and render."""
    check_device(ns.device)
    check_options(options, get_config("official"), FLAG_NAMES)  # before any model loads
    if not ns.example:
        audio = None if str(ns.audio) == "-" else ns.audio
        check_paths(ns.image, audio, ns.out, needs_audio=options.get("expression", "audio") == "audio")
    if ns.example:
        ns.image = example_photo()
        ns.audio = example_speech(ns.out.with_name(ns.out.stem + "_speech.wav"))
        ns.transcript = ns.transcript or EXAMPLE_TEXT
    if ns.audio is not None and str(ns.audio) == "-":
        ns.audio = None
    pipe = TalkingHeadPipeline.from_pretrained(ns.weights, device=ns.device, seed=ns.seed, generator=ns.generator)
    out = pipe(ns.image, ns.audio, ns.out, seed=ns.seed, show_progress=not ns.quiet, transcript=ns.transcript,
               **options)
    print(out.video)
    return 0


if __name__ == "__main__":
    sys.exit(main())
