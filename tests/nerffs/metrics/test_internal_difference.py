import math

import numpy as np

from nerffs.metrics.internal_difference import deltas, flip_photo


def test_deltas_are_input_minus_flipped():
    # Paper Table 2, NeRFFaceSpeech on HDTF: FID 36.994 -> 44.363, CSIM 0.826 -> 0.750.
    d = deltas({"fid": 36.994, "csim": 0.826, "x": float("nan"), "name": "a"}, {"fid": 44.363, "csim": 0.750, "x": 1.0})
    assert math.isclose(d["fid"], -7.369, abs_tol=1e-9) and math.isclose(d["csim"], 0.076, abs_tol=1e-9)
    assert math.isnan(d["x"]) and "name" not in d


def test_flip_photo():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(flip_photo(img), img[:, ::-1])
