"""LipaintNet: a latent mapper supplying inner-mouth features (paper section 4.4)."""
from nerffs.lipaint.model import LipaintNet, load_lipaint

__all__ = ["LipaintNet", "load_lipaint"]
