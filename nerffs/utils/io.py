"""File output and checksums for ``nerffs``: the helpers of ``torch_utils.files``, under the name nerffs imports.

They are defined once, in the lowest package that needs them (``stylenerf.io`` writes atomically and hashes
weight files, and may not import ``nerffs``); this module only gives them their nerffs import path.
"""
from torch_utils.files import (atomic_path, atomic_write_bytes, atomic_write_text, file_sha256, hash_file,
                               save_safetensors)

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "file_sha256", "hash_file", "save_safetensors"]
