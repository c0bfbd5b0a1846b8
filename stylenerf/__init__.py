"""StyleNeRF backbone (FFHQ), re-implemented weight-compatibly: ``Generator``, ``GeneratorConfig``, loaders.

Importing this package does no work (no compilation, no file access).
"""
from stylenerf.config import GeneratorConfig, get_preset
from stylenerf.generator import Generator, NeRFOutput, SampleDepths, SynthesisOutput
from stylenerf.io import load_generator, save_generator

__all__ = ["Generator", "GeneratorConfig", "NeRFOutput", "SampleDepths", "SynthesisOutput", "get_preset", "load_generator",
           "save_generator"]
