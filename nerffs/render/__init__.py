"""Rendering helpers: camera paths over a generator and video encoding."""
