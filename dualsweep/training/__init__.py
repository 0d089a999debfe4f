"""Training: the LightningModule, optimisers and the `train(config, out_dir)` entry point."""

from dualsweep.training.run import train

__all__ = ["train"]
