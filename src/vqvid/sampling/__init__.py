"""Sampling from PixelSNAIL priors, and their per-position distributions for entropy coding.

`sample` draws codes in raster order, optionally after given context codes. `IncrementalStepper` gives the
distribution of one position at a time from per-layer caches (Ramachandran et al. 2017, arXiv 1704.06001);
`FusedStepper` is the same with each position's layers fused into a few matrix products, what `sample` uses;
`NaiveStepper` computes the same with a full forward pass per position, as a reference.
"""

from vqvid.sampling.ancestral import draw, sample
from vqvid.sampling.fused import FusedStepper
from vqvid.sampling.steppers import IncrementalStepper, NaiveStepper

__all__ = ["FusedStepper", "IncrementalStepper", "NaiveStepper", "draw", "sample"]
