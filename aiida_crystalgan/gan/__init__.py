"""The GAN of aiida-crystalgan in pure PyTorch (never imports AiiDA): representation, invariant features, the networks
(:class:`CrystalGan`), losses, trainer and training loop with resumable checkpoints, and batched generation.

:class:`TrainingDiverged` is raised by :func:`train` when a loss becomes NaN or infinite; it names the last good
checkpoint. :class:`NoMinimaError` (a ``ValueError``) is raised when the data has no structure of role ``minimum``.
"""

from .checkpoint import load_checkpoint, read_checkpoint_summary, save_checkpoint
from .config import GanConfig
from .data import NoMinimaError
from .generation import generate
from .model import CrystalGan
from .trainer import TrainingDiverged
from .training import TrainResult, train

__all__ = (
    'CrystalGan',
    'GanConfig',
    'NoMinimaError',
    'TrainResult',
    'TrainingDiverged',
    'generate',
    'load_checkpoint',
    'read_checkpoint_summary',
    'save_checkpoint',
    'train',
)
