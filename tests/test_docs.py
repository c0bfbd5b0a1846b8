"""docs/architecture.md names real things: every path exists, every module imports, every function or class it
names is defined in the code (a rename that forgets the document fails here)."""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("nerffs", "stylenerf", "torch_utils", "scripts")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
NOT_CODE = {"log", "gradio", "dlib", "mediapipe", "librosa", "soundfile", "scipy", "torch.distributed",
            "audio2exp", "talking", "photo_models", "resolution", "inversion"}


def code_names() -> set[str]:
    """Every function, class, method and assigned name in the packages and app.py."""
    names: set[str] = set()
    for path in [ROOT / "app.py", *(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
                names.update(t.attr for t in targets if isinstance(t, ast.Attribute))
    return names


def quoted() -> list[str]:
    """The inline code spans of the document (fenced blocks left out)."""
    text = re.sub(r"```.*?```", "", DOC.read_text(), flags=re.S)
    return re.findall(r"`([^`]+)`", text)


def test_paths_in_the_architecture_doc_exist():
    paths = [q for q in quoted() if "/" in q and " " not in q]
    assert paths, "the document names no files"
    missing = [p for p in paths if not (ROOT / p).exists() and not (ROOT / "nerffs" / p).exists()]
    assert not missing, f"docs/architecture.md names missing files: {missing}"


def test_names_in_the_architecture_doc_are_defined():
    defined = code_names()
    unknown = []
    for token in quoted():
        token = token.split("(")[0]
        if not NAME.match(token) or token in NOT_CODE:
            continue
        if token.endswith(".py"):  # a file name in a package's listing
            if not (ROOT / token).is_file() and not any(next((ROOT / package).rglob(token), None)
                                                        for package in PACKAGES):
                unknown.append(token)
            continue
        if token.split(".")[0] in PACKAGES:  # a module, or a module's attribute
            if not _is_module(token) and not (_is_module(token.rpartition(".")[0])
                                              and token.rpartition(".")[2] in defined):
                unknown.append(token)
        elif token.split(".")[-1] not in defined:
            unknown.append(token)
    assert not unknown, f"docs/architecture.md names what the code does not define: {unknown}"


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("module", ["nerffs.pipeline", "nerffs.talking.loop", "nerffs.deform.rays"])
def test_the_doc_covers_the_core_modules(module):
    assert module.replace(".", "/") + ".py" in DOC.read_text() or module in DOC.read_text()
