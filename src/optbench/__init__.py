"""optbench: reproducible comparisons of deep-learning optimizers."""

__version__ = "0.1.0"
