"""The GAN of aiida-crystalgan in pure PyTorch (never imports AiiDA): representation, invariant features, the networks
(:class:`CrystalGan`), losses, trainer and training loop with resumable checkpoints, and batched generation.

:class:`TrainingDiverged` is raised by :func:`train` when a loss becomes NaN or infinite; it names the last good
checkpoint.
"""

from .checkpoint import load_checkpoint, read_checkpoint_summary, save_checkpoint
from .config import GanConfig
from .generation import generate
from .model import CrystalGan
from .trainer import TrainingDiverged
from .training import TrainResult, train

__all__ = ('CrystalGan', 'GanConfig', 'TrainResult', 'TrainingDiverged', 'generate', 'load_checkpoint',
           'read_checkpoint_summary', 'save_checkpoint', 'train')
