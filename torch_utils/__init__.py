"""Framework-level, model-agnostic helpers: custom ops with pure-torch reference twins, misc utilities.

Dependency direction of this repository: ``torch_utils`` <- ``stylenerf`` <- ``nerffs`` <- ``scripts``/``app.py``.
Nothing in this package imports from the others.
"""
