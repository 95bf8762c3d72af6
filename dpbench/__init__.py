"""dpbench: benchmark parallel decoding of diffusion language models."""

__version__ = "0.1.0"
