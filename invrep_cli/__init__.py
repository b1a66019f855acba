"""invrep: unpaired image denoising with LIR (Learning Invariant Representation, CVPR 2020)."""

__version__ = "0.1.0"
