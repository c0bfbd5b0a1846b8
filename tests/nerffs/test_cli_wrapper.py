"""The one main wrapper of the scripts (nerffs.utils.cli.run_cli) and the device a process takes under torchrun."""
import logging

import pytest

from nerffs.errors import InputError, WeightsMissingError
from nerffs.utils import cli, device
from nerffs.utils.cli import print_error, run_cli
from nerffs.utils.device import process_device


@pytest.fixture
def log_setup(monkeypatch):
    """What run_cli asks logging.basicConfig for (the real call would be a no-op under pytest's handlers)."""
    calls = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: calls.append(kw))
    return calls


@pytest.mark.parametrize("quiet, level", [(False, logging.INFO), (True, logging.WARNING)])
def test_run_cli_sets_up_logging_and_returns_the_status(log_setup, quiet, level):
    assert run_cli(lambda: 3, quiet=quiet) == 3
    assert log_setup == [{"level": level, "format": cli.LOG_FORMAT}]


def test_run_cli_turns_an_error_into_one_line_and_exit_1(log_setup, capsys):
    def body():
        raise WeightsMissingError("missing weights x; fetch them with y\nsecond line")

    assert run_cli(body) == 1
    assert capsys.readouterr().err == "error: missing weights x; fetch them with y\n"
    assert run_cli(lambda: None) == 0


def test_print_error_is_the_error_line(capsys):
    print_error(KeyError("ws"))
    assert capsys.readouterr().err == "error: KeyError: 'ws'\n"


def test_process_device_under_torchrun(monkeypatch):
    monkeypatch.setattr(device, "check_device", lambda d: d)  # what the GPU check would receive
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert process_device("cuda") == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert process_device("cuda") == "cuda:1"
    assert process_device("cuda:0") == "cuda:0" and process_device("cpu") == "cpu"


def test_process_device_is_checked(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert str(process_device("cpu")) == "cpu"
    with pytest.raises(InputError):
        process_device("tpu")
