"""The torch device a run uses: CUDA when present, else the CPU."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = 'auto') -> torch.device:
    """``'auto'`` -> CUDA when available, else CPU; ``ValueError`` when CUDA is asked for but absent."""
    if str(device) == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    resolved = torch.device(device)
    if resolved.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError('device `cuda` requested but CUDA is not available on this machine')
    if resolved.type not in ('cpu', 'cuda'):
        raise ValueError(f'unsupported device `{device}`: use auto, cpu or cuda')
    return resolved
