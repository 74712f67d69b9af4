"""Plain nn.Modules: quantizers, the hierarchical VQ-VAE, PixelSNAIL priors. Nothing here imports Lightning."""
