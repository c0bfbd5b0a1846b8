"""Every error class of nerffs is defined in nerffs.errors, and a missing optional package reads the same
(one ``MissingDependencyError`` with the pip command) whichever part of nerffs needs it."""
import ast
import sys
from pathlib import Path

import pytest

from nerffs import errors
from nerffs.errors import MissingDependencyError, NerffsError
from nerffs.metrics import cpbd

NERFFS = Path(errors.__file__).resolve().parent


def _error_classes(path: Path) -> list[str]:
    """Public classes in ``path`` that derive (by name) from an exception class (a private one that never leaves
    its module, such as a download source's internal retry signal, is not an error users see)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
            if any(b.endswith(("Error", "Exception")) for b in bases):
                out.append(node.name)
    return out


def test_error_classes_live_in_nerffs_errors_only():
    elsewhere = {str(p.relative_to(NERFFS)): names for p in sorted(NERFFS.rglob("*.py"))
                 if p.name != "errors.py" and (names := _error_classes(p))}
    assert elsewhere == {}
    assert len(_error_classes(NERFFS / "errors.py")) >= 10


def test_every_error_is_a_nerffs_error_and_a_builtin_one():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    for cls in classes:
        assert issubclass(cls, NerffsError)
        if cls is not NerffsError:  # callers that do not know nerffs catch the built-in base
            assert any(b.__module__ == "builtins" and b is not Exception for b in cls.__mro__), cls


def test_missing_metric_package_is_a_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "cpbd", None)  # `import cpbd` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps cpbd-py312"):
        cpbd.cpbd_score(__import__("numpy").zeros((8, 8), "uint8"))
