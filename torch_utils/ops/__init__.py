"""Custom ops with pure-torch reference twins: bias_act, upfirdn2d (+ wrappers), conv2d_resample.

Import the submodules directly (``from torch_utils.ops import bias_act``). Importing this package or
any op module compiles nothing: CUDA plugins are built lazily on the first CUDA call
(see :mod:`torch_utils.custom_ops`).
"""
