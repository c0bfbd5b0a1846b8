"""nerffs: NeRFFaceSpeech - one-shot, audio-driven, 3D-aware talking heads.

Glossary of tensor names used across the repository (shapes at module boundaries):

* ``ws``        [B, num_ws, w_dim]  per-layer styles of the StyleNeRF generator (10 NeRF + upsampler styles)
* ``cam2world`` [B, 4, 4]           camera-to-world matrix (OpenGL: camera looks along -z; world +z up,
                                    +x the frontal viewing axis)
* ``coeffs``    [B, 257]            Deep3D/BFM09 coefficients (id, exp, tex, angle, gamma, trans)
* ``exp``       [T, 64]             per-frame expression coefficients
* ``verts``     [B, V, 3]           3DMM vertices; ``proj`` [B, V, 2] their 224x224 image projections
* ``mel``       [T, 80, 16]         per-video-frame mel windows
* images        [B, 3, H, W]        float in [-1, 1] unless stated otherwise
"""
import importlib

__version__ = "0.1.0"

# The public API, imported on first use so that ``import nerffs`` (and the CLIs' early checks) stay light.
_PUBLIC = {
    "TalkingHeadPipeline": "nerffs.pipeline",
    "TalkingHeadOutput": "nerffs.call",
    "Call": "nerffs.call",
    "PipelineConfig": "nerffs.config",
    "get_config": "nerffs.config",
    "ProgressEvent": "nerffs.progress",
    "STEPS": "nerffs.progress",
    "run_jobs": "nerffs.jobs",
    "read_jobs": "nerffs.jobs",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'nerffs' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
