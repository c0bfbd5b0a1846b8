"""The ``offline`` model source: a talking head built per photo from packaged models only (no official weights)."""
