"""The file helpers every layer shares: one cache-root rule, atomic writes, file checksums."""
import hashlib
import os
import stat

import pytest
import torch
from safetensors.torch import load_file

from torch_utils.files import atomic_path, atomic_write_text, cache_root, file_sha256, save_safetensors


@pytest.mark.parametrize("value", [None, "", "   "])
def test_cache_root_is_the_home_cache_when_the_variable_is_unset_or_empty(monkeypatch, tmp_path, value):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if value is None:
        monkeypatch.delenv("NERFFS_CACHE", raising=False)
    else:
        monkeypatch.setenv("NERFFS_CACHE", value)
    assert cache_root() == tmp_path / "home" / ".cache" / "nerffs"


def test_cache_root_follows_the_variable_with_home_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NERFFS_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.setenv("NERFFS_CACHE", "~/elsewhere")
    assert cache_root() == tmp_path / "home" / "elsewhere"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_safetensors_are_written_with_the_usual_mode_and_exact_values(tmp_path):
    umask = os.umask(0o022)
    try:
        base = torch.arange(6.0).view(2, 3)
        save_safetensors(tmp_path / "t.safetensors", {"a": base, "b": base.t()}, metadata={"k": "v"})
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "t.safetensors").stat().st_mode) == 0o644
    back = load_file(str(tmp_path / "t.safetensors"))
    assert torch.equal(back["a"], base) and torch.equal(back["b"], base.t())


def test_file_sha256_reads_in_chunks_like_hashlib(tmp_path):
    data = os.urandom((1 << 22) + 17)  # more than one chunk
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
