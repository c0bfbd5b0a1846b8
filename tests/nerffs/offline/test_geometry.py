"""The mediapipe mesh, its named contours and the rule-based expression basis on the astronaut photo."""
from __future__ import annotations

import numpy as np
import pytest

from nerffs.offline.geometry import (EXP_CHANNELS, GeometryConfig, build_mesh, pixels_to_world, world_to_ndc)
from nerffs.offline.mesh import mesh_topology

JAW, PART, ROUND, SPREAD, PRESS, TUCK, BLINK = range(len(EXP_CHANNELS))


@pytest.fixture(scope="module")
def mesh(mesh_points):
    return build_mesh(mesh_points, 512, mesh_topology(mesh_points))


def _gap(world, upper, lower):
    """Mean vertical distance of two left-to-right chains over their middle third."""
    n = len(upper)
    mid = slice(n // 3, n - n // 3)
    return float(np.mean(world[upper[mid], 2] - world[lower[mid], 2]))


def test_topology_contours(mesh_points):
    topo = mesh_topology(mesh_points)
    assert topo.triangles.shape == (852, 3) and len(topo.face_oval) == 36
    for chain in (topo.lips_outer, topo.lips_inner, *topo.eyes):
        assert chain.upper[0] == chain.lower[0] and chain.upper[-1] == chain.lower[-1]  # shared corners
        assert mesh_points[chain.upper[0], 0] < mesh_points[chain.upper[-1], 0]           # left to right
        assert mesh_points[chain.upper[1:-1], 1].mean() < mesh_points[chain.lower[1:-1], 1].mean()  # y down
    assert mesh_points[topo.eyes[0].upper, 0].mean() < mesh_points[topo.eyes[1].upper, 0].mean()
    edges = {tuple(sorted(e)) for t in topo.triangles for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}
    assert all(tuple(sorted((a, b))) in edges for a, b in zip(topo.face_oval, np.roll(topo.face_oval, 1)))


def test_world_placement_is_exact_under_the_frontal_camera(mesh_points):
    topo = mesh_topology(mesh_points)
    world = pixels_to_world(mesh_points, 512, topo.face_oval, GeometryConfig())
    ndc = world_to_ndc(world)
    assert np.allclose(ndc[:, 0], 2 * mesh_points[:, 0] / 512 - 1, atol=1e-12)
    assert np.allclose(ndc[:, 1], 1 - 2 * mesh_points[:, 1] / 512, atol=1e-12)
    assert abs(world[topo.face_oval, 0].mean() - GeometryConfig().face_depth) < 1e-12
    assert world[4, 0] > world[topo.face_oval, 0].mean() + 0.02  # the nose tip stands out toward the camera


def test_reference_expression_reproduces_the_photo_and_zero_closes_the_mouth(mesh):
    topo = mesh.topology
    assert np.allclose(mesh.driven(mesh.e0), mesh.world)
    assert mesh.e0[JAW] > 0.1 and mesh.e0[PART] > 0.1 and np.all(mesh.e0[2:] == 0)  # the astronaut smiles openly
    open_gap = _gap(mesh.world, topo.lips_inner.upper, topo.lips_inner.lower)
    closed = mesh.driven(np.zeros(len(EXP_CHANNELS)))
    assert open_gap > 0.005
    assert abs(_gap(closed, topo.lips_inner.upper, topo.lips_inner.lower)) < 0.15 * open_gap


def test_closed_photo_has_no_reference_expression(mesh):
    """The closed-mouth geometry, seen as a photo of its own, gets e0 = 0."""
    closed = mesh.driven(np.zeros(len(EXP_CHANNELS)))
    ndc = world_to_ndc(closed)
    points = np.column_stack([(ndc[:, 0] + 1) * 256, (1 - ndc[:, 1]) * 256, mesh.points[:, 2]])
    again = build_mesh(points, 512, mesh.topology)
    assert np.all(again.e0 == 0)


@pytest.mark.parametrize("channel", [JAW, PART])
def test_opening_channels_open_the_inner_lips_and_leave_the_eyes(mesh, channel):
    topo = mesh.topology
    exp = mesh.e0.copy()
    exp[channel] += 1.0
    moved = mesh.driven(exp)
    assert _gap(moved, topo.lips_inner.upper, topo.lips_inner.lower) > _gap(
        mesh.world, topo.lips_inner.upper, topo.lips_inner.lower) + 0.003
    eyes = np.concatenate([e.vertices for e in topo.eyes])
    assert np.abs(moved[eyes] - mesh.world[eyes]).max() < 1e-4  # world units: 1e-4 is a quarter pixel


def test_jaw_moves_the_chin_down_and_keeps_the_upper_lip(mesh):
    topo = mesh.topology
    d = mesh.basis[JAW]
    chin = topo.face_oval[np.argmin(mesh.world[topo.face_oval, 2])]
    assert d[chin, 2] < -0.005 and d[chin, 0] < 0           # down and back
    assert np.abs(d[topo.lips_outer.upper[1:-1]]).max() < 1e-12


def test_round_narrows_and_spread_widens_the_mouth(mesh):
    corners = mesh.topology.lips_outer.upper[[0, -1]]
    width = lambda w: float(np.ptp(w[corners, 1]))  # noqa: E731
    for channel, sign in ((ROUND, -1), (SPREAD, +1)):
        exp = mesh.e0.copy()
        exp[channel] = 1.0
        assert sign * (width(mesh.driven(exp)) - width(mesh.world)) > 0.1 * width(mesh.world) * (
            0.5 if channel == SPREAD else 1.0)


def test_blink_closes_the_eyes(mesh):
    exp = mesh.e0.copy()
    exp[BLINK] = 1.0
    moved = mesh.driven(exp)
    for eye in mesh.topology.eyes:
        assert _gap(moved, eye.upper, eye.lower) < 0.15 * _gap(mesh.world, eye.upper, eye.lower)
