"""The synthetic stand-in face model is a valid BFM09-layout model."""
import torch

from nerffs.face3d.synthetic import synthetic_face_model
from nerffs.face3d.coeffs import FaceCoeffs


def test_synthetic_face_model_layout_and_projection():
    model = synthetic_face_model(num_vertices=400)
    assert model.num_vertices == 400 and model.keypoints.shape == (68,)
    tri = model.tri
    assert tri.max() < 400 and tri.min() >= 0
    # Every vertex of a triangle lists that triangle in its buffer (or the buffer is full).
    pb = model.point_buf
    assert int(pb.max()) == tri.shape[0]  # padding value F
    geo = model(FaceCoeffs.zeros())
    assert geo.proj.shape == (1, 400, 2) and torch.isfinite(geo.proj).all()
    assert geo.landmarks.shape == (1, 68, 2)
