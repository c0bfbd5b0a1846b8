"""The one-line error every CLI prints."""
import pickle

from nerffs.errors import NoFaceError
from nerffs.utils.cli import error_line


def test_user_errors_print_their_first_line_only():
    assert error_line(NoFaceError("no face found in x.png; use a photo with a face\nmore")) == \
        "error: no face found in x.png; use a photo with a face"
    assert error_line(FileNotFoundError("audio not found: a.wav")) == "error: audio not found: a.wav"
    assert error_line(pickle.UnpicklingError("refusing to load os.system")) == "error: refusing to load os.system"


def test_unexpected_errors_show_their_type():
    assert error_line(KeyError("ws")) == "error: KeyError: 'ws'"
    assert error_line(ZeroDivisionError()) == "error: ZeroDivisionError"
