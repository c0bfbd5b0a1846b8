"""One face mesh shared by threads (one pipeline serving concurrent calls shares its parser): mediapipe's graphs
crash the process when run from several threads at once, so the calls take turns and give the serial result."""
from __future__ import annotations

import subprocess
import sys

CHILD = """
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from skimage import data
from nerffs.offline.mesh import MediaPipeFace
face = MediaPipeFace()
photo = data.astronaut()
images = [photo, np.ascontiguousarray(photo[::-1, ::-1]), np.ascontiguousarray(photo[:, ::-1])]
serial = [face.landmarks(image) for image in images]
def same(k):
    got, want = face.landmarks(images[k % 3]), serial[k % 3]
    return (got is None) == (want is None) and (got is None or np.array_equal(got, want))
with ThreadPoolExecutor(4) as pool:
    equal = sum(pool.map(same, range(40)))
print("equal", equal, sum(s is not None for s in serial))
"""


def test_one_face_mesh_shared_by_threads_gives_the_serial_answer():
    """Without the lock this child dies with a segfault within seconds; run apart so a crash fails only this."""
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-500:]}"
    assert out.stdout.split() == ["equal", "40", "3"]
