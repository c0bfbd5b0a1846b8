"""The project as a new user meets it: installed as a package (pyproject.toml), the README's library snippet
run as printed from a folder outside the repository, the console scripts, and `make demo` installing only what
the demo needs (issue #16, items 1 and 10)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPTS = {"nerffs-talk": "scripts.talk", "nerffs-views": "scripts.render_views", "nerffs-app": "app"}


def _pins(path: Path) -> list[str]:
    """The ``name==version`` lines of a requirements file (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def readme_library_snippet() -> str:
    """The Python block under "Library use:" in README.md, exactly as printed."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"Library use:\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md has no ```python block after 'Library use:'"
    return match.group(1)


def test_dependencies_match_the_requirements_files():
    project = _pyproject()["project"]
    torch_pin = re.search(r"TORCH_SPEC \?= (\S+)", (ROOT / "Makefile").read_text()).group(1)
    assert sorted(project["dependencies"]) == sorted([torch_pin, *_pins(ROOT / "requirements.txt")])
    assert sorted(project["optional-dependencies"]["test"]) == sorted(_pins(ROOT / "requirements-dev.txt"))
    nodeps = {re.split(r"[=<>]", p)[0].lower() for p in _pins(ROOT / "requirements-nodeps.txt")}
    listed = {re.split(r"[=<>]", p)[0].lower() for p in project["dependencies"]}
    assert not nodeps & listed  # they cannot be normal dependencies (documented in pyproject.toml)


def test_console_scripts_point_at_the_scripts_main_functions():
    import importlib

    scripts = _pyproject()["project"]["scripts"]
    for name, module in CONSOLE_SCRIPTS.items():
        assert scripts[name] == f"{module}:main"
    for target in scripts.values():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_package_is_installed_and_its_commands_run(tmp_path):
    """`make setup` installs the project editable: importable from anywhere, commands on the venv's PATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import nerffs, scripts.talk, app, stylenerf, torch_utils; print(nerffs.__file__)"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"nerffs is not installed in this venv (run `make setup`): {res.stderr[-300:]}"
    assert Path(res.stdout.strip()).resolve().is_relative_to(ROOT)
    bindir = Path(sys.executable).parent
    for name in CONSOLE_SCRIPTS:
        exe = bindir / name
        assert exe.is_file(), f"{exe} missing (run `make setup`)"
        res = subprocess.run([str(exe), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0 and "usage" in res.stdout.lower(), (name, res.stderr[-300:])


@pytest.mark.slow
def test_readme_library_snippet_runs_as_printed_outside_the_repo(tmp_path):
    """The snippet, unchanged, from a temporary folder with the venv's python: `auto` finds no official weights
    (an empty weights folder), so the offline demo models animate a real photo with real speech."""
    from PIL import Image

    from nerffs.examples import example_photo, example_speech

    work = tmp_path / "user"
    work.mkdir()
    Image.open(example_photo()).convert("RGB").save(work / "photo.jpg", quality=92)
    try:
        example_speech(work / "speech.wav", "Hi there.")
    except Exception as exc:  # noqa: BLE001 - espeak-ng missing
        pytest.skip(str(exc))
    (work / "snippet.py").write_text(readme_library_snippet())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["NERFFS_WEIGHTS"] = str(tmp_path / "no_weights")
    res = subprocess.run([sys.executable, "snippet.py"], cwd=work, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (work / "talk.mp4").stat().st_size > 1000
    printed = res.stdout.split()
    assert printed[0] == "talk.mp4" and int(printed[1]) > 5 and printed[2] == "offline"


def test_make_demo_installs_only_what_the_demo_needs():
    """`make demo` (and `make app`): demo system packages and runtime requirements only; `make test`: all."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")

    def plan(target: str) -> str:
        res = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout

    demo, test = plan("demo"), plan("test")
    assert plan("app").count("requirements-dev") == 0
    assert "system-deps.sh demo" in demo and "system-deps.sh test" not in demo
    assert "requirements.txt" in demo and "--no-deps -r requirements-nodeps.txt" in demo
    assert "--no-deps -e ." in demo  # the package itself, without re-resolving the pins
    assert "requirements-dev" not in demo and "pytest" not in demo.replace("-m scripts", "")
    assert "system-deps.sh test" in test and "-r requirements-dev.txt" in test
    assert "--no-deps -r requirements-dev-nodeps.txt" in test and "--no-deps -e ." in test

    def packages(mode: str) -> list[str]:
        res = subprocess.run(["bash", str(ROOT / ".ci" / "system-deps.sh"), mode, "--list"], capture_output=True,
                             text=True, check=True)
        return res.stdout.split()

    assert packages("demo") == ["ffmpeg", "espeak-ng"]
    assert set(packages("test")) == {"ffmpeg", "espeak-ng", "chromium", "chromium-driver"}
