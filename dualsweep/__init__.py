"""dualsweep: data-constrained scaling studies of dual-objective language models."""

__version__ = "0.1.0"
