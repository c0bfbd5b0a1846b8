"""The talking-head method: control points, feature blending and the two-pass frame loop (paper 4.3-4.5)."""
