"""The GAN of aiida-crystalgan in pure PyTorch (never imports AiiDA): representation, invariant features, generator,
critic, physics head, training with resumable checkpoints, and batched generation.
"""

from .checkpoint import load_checkpoint, read_checkpoint_summary, save_checkpoint
from .config import GanConfig
from .generation import generate
from .training import TrainResult, train

__all__ = ('GanConfig', 'TrainResult', 'generate', 'load_checkpoint', 'read_checkpoint_summary', 'save_checkpoint',
           'train')
