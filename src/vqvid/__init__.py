"""vqvid: discrete codes of video.

A hierarchical 3D VQ-VAE turns clips (B×3×T×H×W in [-1, 1]) into top and bottom integer codes; PixelSNAIL
priors model those codes; with both, vqvid reconstructs, predicts and compresses video.
"""

__version__ = "0.1.0"
