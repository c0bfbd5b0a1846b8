"""custom_ops (policy, build keys, lazy loading, fallback) and the small helpers of torch_utils.misc."""
from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from torch_utils import custom_ops, misc

REPO_ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------------------
# NERFFS_OPS policy.


@pytest.mark.parametrize("raw,expected", [(None, "auto"), ("", "auto"), ("auto", "auto"), ("ref", "ref"),
                                          (" CUDA ", "cuda"), ("Ref", "ref")])
def test_ops_policy_valid(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: str) -> None:
    if raw is None:
        monkeypatch.delenv("NERFFS_OPS", raising=False)
    else:
        monkeypatch.setenv("NERFFS_OPS", raw)
    assert custom_ops.ops_policy() == expected


@pytest.mark.parametrize("raw", ["gpu", "1", "reference"])
def test_ops_policy_invalid(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("NERFFS_OPS", raw)
    with pytest.raises(ValueError, match="NERFFS_OPS"):
        custom_ops.ops_policy()


# ----------------------------------------------------------------------------------------------------------
# Build directory key and staging.


def test_build_key_tracks_source_contents(tmp_path: Path) -> None:
    src, hdr = tmp_path / "op.cu", tmp_path / "op.h"
    src.write_text("__global__ void k() {}\n")
    hdr.write_text("#pragma once\n")
    key = custom_ops._build_key("op_plugin", [src, hdr], "gpu=A")
    assert key.startswith("op_plugin-") and len(key) == len("op_plugin-") + 32
    assert custom_ops._build_key("op_plugin", [src, hdr], "gpu=A") == key  # deterministic
    assert custom_ops._build_key("op_plugin", [src, hdr], "gpu=B") != key  # machine enters the key
    hdr.write_text("#pragma once\n#define X 1\n")
    changed = custom_ops._build_key("op_plugin", [src, hdr], "gpu=A")
    assert changed != key  # a header edit invalidates the build
    other_dir = tmp_path / "copy"
    other_dir.mkdir()
    for path in (src, hdr):
        (other_dir / path.name).write_bytes(path.read_bytes())
    assert custom_ops._build_key("op_plugin", [other_dir / "op.cu", other_dir / "op.h"], "gpu=A") == changed


def test_stage_sources_and_extensions_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERFFS_CACHE", str(tmp_path / "cache"))
    assert custom_ops.extensions_root() == tmp_path / "cache" / "torch_extensions"
    src = tmp_path / "a.cpp"
    src.write_text("int a;\n")
    target = custom_ops.extensions_root() / "plugin-abc"
    custom_ops._stage_sources([src], target)
    assert (target / "a.cpp").read_text() == "int a;\n"
    custom_ops._stage_sources([src], target)  # second call: already there, no error
    assert sorted(p.name for p in target.parent.iterdir()) == ["plugin-abc"]  # no staging leftovers


def test_failed_build_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "nerffs_test_missing_plugin"
    calls = []
    real_build = custom_ops._build

    def counting_build(*args, **kwargs):
        calls.append(args[0])
        return real_build(*args, **kwargs)

    monkeypatch.setattr(custom_ops, "_build", counting_build)
    monkeypatch.setenv("NERFFS_CACHE", str(tmp_path))
    try:
        with pytest.raises(RuntimeError, match=name):
            custom_ops.get_plugin(name, sources=["missing.cu"], source_dir=str(tmp_path))
        with pytest.raises(RuntimeError, match="earlier"):
            custom_ops.get_plugin(name, sources=["missing.cu"], source_dir=str(tmp_path))
        assert calls == [name]  # the second call did not try again
    finally:
        custom_ops._PLUGINS.pop(name, None)


def test_import_builds_nothing() -> None:
    """A fresh interpreter importing every op module has an empty plugin cache and no cpp_extension."""
    code = (
        "import sys\n"
        "import torch_utils.ops, torch_utils.ops.bias_act, torch_utils.ops.upfirdn2d\n"
        "import torch_utils.ops.conv2d_resample, torch_utils.misc\n"
        "from torch_utils import custom_ops\n"
        "assert custom_ops._PLUGINS == {}, custom_ops._PLUGINS\n"
        "assert 'torch.utils.cpp_extension' not in sys.modules\n"
        "assert not any(m.startswith('nerffs_') for m in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------------------------------------
# Implementation selection (stub tensors stand in for CUDA tensors on this CPU-only machine).

CUDA_LIKE = SimpleNamespace(is_cuda=True, device="cuda:0")
CPU_LIKE = SimpleNamespace(is_cuda=False, device="cpu")


def _failing_loader():
    raise RuntimeError("no compiler here")


def _forbidden_loader():
    raise AssertionError("the plugin must not be loaded for this selection")


@pytest.fixture
def stub_name():
    name = "nerffs_test_stub_plugin"
    yield name
    custom_ops._PLUGINS.pop(name, None)


def test_select_impl_ref_and_cpu(monkeypatch: pytest.MonkeyPatch, stub_name: str) -> None:
    monkeypatch.delenv("NERFFS_OPS", raising=False)
    assert custom_ops.select_impl("ref", CUDA_LIKE, stub_name, _forbidden_loader) is None
    assert custom_ops.select_impl("auto", CPU_LIKE, stub_name, _forbidden_loader) is None
    monkeypatch.setenv("NERFFS_OPS", "ref")
    assert custom_ops.select_impl("auto", CUDA_LIKE, stub_name, _forbidden_loader) is None
    monkeypatch.setenv("NERFFS_OPS", "cuda")
    assert custom_ops.select_impl("auto", CPU_LIKE, stub_name, _forbidden_loader) is None
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        custom_ops.select_impl("cuda", CPU_LIKE, stub_name, _forbidden_loader)
    with pytest.raises(ValueError, match="impl"):
        custom_ops.select_impl("gpu", CPU_LIKE, stub_name, _forbidden_loader)


def test_select_impl_cuda_paths(monkeypatch: pytest.MonkeyPatch, stub_name: str) -> None:
    plugin = object()
    monkeypatch.delenv("NERFFS_OPS", raising=False)
    assert custom_ops.select_impl("auto", CUDA_LIKE, stub_name, lambda: plugin) is plugin
    assert custom_ops.select_impl("cuda", CUDA_LIKE, stub_name, lambda: plugin) is plugin
    with pytest.raises(RuntimeError, match="no compiler"):
        custom_ops.select_impl("cuda", CUDA_LIKE, stub_name, _failing_loader)
    monkeypatch.setenv("NERFFS_OPS", "cuda")
    with pytest.raises(RuntimeError, match="no compiler"):
        custom_ops.select_impl("auto", CUDA_LIKE, stub_name, _failing_loader)


def test_auto_fallback_warns_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                  stub_name: str) -> None:
    monkeypatch.delenv("NERFFS_OPS", raising=False)
    with caplog.at_level(logging.WARNING, logger="torch_utils.custom_ops"):
        for _ in range(3):
            assert custom_ops.select_impl("auto", CUDA_LIKE, stub_name, _failing_loader) is None
    warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING and stub_name in r.getMessage()]
    assert len(warnings_logged) == 1


# ----------------------------------------------------------------------------------------------------------
# torch_utils.misc


def test_assert_shape() -> None:
    t = torch.zeros(2, 3, 4)
    misc.assert_shape(t, [2, 3, 4])
    misc.assert_shape(t, [None, 3, None])
    misc.assert_shape(t, [torch.tensor(2), None, 4])
    with pytest.raises(AssertionError, match=r"\[2, 3, 4\].*\[2, 5, \*\]"):
        misc.assert_shape(t, [2, 5, None])
    with pytest.raises(AssertionError, match="rank 3 vs 2"):
        misc.assert_shape(t, [2, 3])


def test_constant_is_cached_and_correct() -> None:
    a = misc.constant([1.0, 2.0], dtype=torch.float32)
    assert a is misc.constant([1.0, 2.0], dtype=torch.float32)
    assert a is not misc.constant([1.0, 2.0], dtype=torch.float64)
    assert a is not misc.constant([1.0, 3.0], dtype=torch.float32)
    torch.testing.assert_close(a, torch.tensor([1.0, 2.0]))
    b = misc.constant(0.5, shape=[2, 3])
    assert b.shape == (2, 3) and b.dtype == torch.get_default_dtype() and b.is_contiguous()
    assert torch.all(b == 0.5)


def test_suppress_tracer_warnings_is_scoped() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with misc.suppress_tracer_warnings():
            warnings.warn("hidden", torch.jit.TracerWarning)
            warnings.warn("shown", UserWarning)
        warnings.warn("after", torch.jit.TracerWarning)
    messages = [str(w.message) for w in caught]
    assert messages == ["shown", "after"]


def test_profiled_function_keeps_behaviour() -> None:
    @misc.profiled_function
    def add(a, b=1):
        """Adds."""
        return a + b

    assert add(2, b=3) == 5 and add.__name__ == "add" and add.__doc__ == "Adds."
