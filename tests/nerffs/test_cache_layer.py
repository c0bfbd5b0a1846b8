"""The one cache layer (nerffs.utils.cache): verified entries, and one PTI entry shared by scripts.invert and
scripts.talk."""
import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from nerffs.examples import example_photo, example_speech
from nerffs.inversion.cache import inversion_dir
from nerffs.inversion.photo import InvertRequest, invert_photo
from nerffs.pipeline import TalkingHeadPipeline
from nerffs.utils.cache import content_key, faces_dir, load_entry, save_entry, tensors_key


def _entry(tmp_path):
    return tmp_path / "e.safetensors", tmp_path / "e.json"


def test_entry_round_trip_and_record(tmp_path):
    tensors = {"a": torch.arange(4.0), "b": torch.ones(2, 2, dtype=torch.int64)}
    save_entry(*_entry(tmp_path), "fmt/1", tensors, {"note": 3})
    got, values = load_entry(*_entry(tmp_path), "fmt/1")
    assert tensors_key(got) == tensors_key(tensors) and values["note"] == 3
    assert json.loads(_entry(tmp_path)[1].read_text())["format"] == "fmt/1"
    assert load_entry(tmp_path / "x.safetensors", tmp_path / "x.json", "fmt/1") is None  # absent: no warning


def _refuse(tensors, values):
    raise ValueError("shapes do not fit the model")


@pytest.mark.parametrize("damage", ["other_format", "flipped_byte", "check_refuses"])
def test_damaged_entries_are_logged_deleted_and_missed(tmp_path, caplog, damage):
    data, record = _entry(tmp_path)
    save_entry(data, record, "fmt/1", {"a": torch.arange(64.0)}, {})
    fmt, check = "fmt/1", None
    if damage == "other_format":
        fmt = "fmt/2"
    elif damage == "flipped_byte":
        raw = bytearray(data.read_bytes())
        raw[-5] ^= 0xFF
        data.write_bytes(bytes(raw))
    else:
        check = _refuse
    with caplog.at_level(logging.WARNING, logger="nerffs.utils.cache"):
        assert load_entry(data, record, fmt, check) is None
    assert "damaged" in caplog.text
    assert not data.exists() and not record.exists()


def test_keys_hash_content_not_identity():
    a = torch.arange(6.0).view(2, 3)
    assert content_key(a) == content_key(a.clone()) == content_key(a.numpy().copy())
    assert content_key(a) != content_key(a.view(3, 2)) != content_key(a.double())
    assert content_key("x", 1) != content_key("x1")


def test_faces_dir_is_under_the_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("NERFFS_CACHE", str(tmp_path))
    assert faces_dir() == tmp_path / "faces" and faces_dir(tmp_path / "mine") == tmp_path / "mine"


@pytest.mark.slow
def test_invert_script_entry_is_reused_by_the_talk_pipeline(tmp_path, monkeypatch):
    """scripts.invert --models smoke inverts the astronaut photo; a talk call with the smoke models then reads
    that entry: no PTI step runs (progress events) and its identity is the script's pivot."""
    monkeypatch.setenv("NERFFS_CACHE", str(tmp_path / "cache"))
    done = invert_photo(InvertRequest(image=example_photo(), out=tmp_path / "inv", models="smoke",
                                      preset_inversion="smoke", quiet=True))
    assert not done.from_cache and done.losses["tuning_steps"] > 0
    (entry,) = inversion_dir().iterdir()

    pipe = TalkingHeadPipeline.from_pretrained("smoke")
    speech = example_speech(tmp_path / "hi.wav", text="Hi there.")
    events = []
    out = pipe(example_photo(), speech, tmp_path / "talk.mp4", source="pti", inversion_preset="smoke",
               show_progress=False, progress=events.append)
    assert [e for e in events if e.step == "identity" and e.message.startswith("PTI")] == []
    assert list(inversion_dir().iterdir()) == [entry]
    assert torch.equal(out.ws, load_file(str(tmp_path / "inv" / "pivot.safetensors"))["ws"])

    # The same watch sees the tuning when the entry does not fit (another seed: another key).
    events.clear()
    call = pipe.call({"source": "pti", "inversion_preset": "smoke"}, seed=1, progress=events.append)
    _, aligned = pipe.align(example_photo(), call=call)
    pipe.identity(aligned, 1, call)
    assert any(e.message == "PTI tuning" for e in events)
    assert len(list(inversion_dir().iterdir())) == 2
