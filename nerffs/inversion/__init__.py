"""PTI inversion of an aligned photo into the StyleNeRF generator (spec-pipeline.md section 6).

Public API:

* ``invert(g, image, cam2world, cfg, ...) -> InversionResult``: projection + pivotal tuning, cached per face
  and resumable; ``InversionResult.apply(g)`` gives the tuned generator.
* ``inversion_dir(faces=None)``: the cache folder of inversions, shared by the pipeline and ``scripts.invert``.
* ``InversionConfig`` and ``get_preset('official' | 'fast' | 'smoke')``.
* ``LPIPS`` and ``load_lpips(net, backbone_path=None, allow_random=False)``: LPIPS v0.1 without torchvision.
* ``project`` and ``tune``: the two stages, usable on their own.

Importing this package does no work (no file access, no weight loading).
"""
from nerffs.inversion.cache import inversion_dir
from nerffs.inversion.config import InversionConfig, ProjectionConfig, TuningConfig, get_preset
from nerffs.inversion.invert import InversionResult, invert
from nerffs.inversion.lpips import LPIPS, load_lpips
from nerffs.inversion.projector import ProjectionResult, project
from nerffs.inversion.pti import TuningResult, tune

__all__ = ["InversionConfig", "InversionResult", "LPIPS", "ProjectionConfig", "ProjectionResult", "TuningConfig",
           "TuningResult", "get_preset", "inversion_dir", "invert", "load_lpips", "project", "tune"]
