"""Checkpoint files: plain dicts of tensors and Python primitives, loaded with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = 'crystalgan-checkpoint'
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (temporary file, then rename), so a killed job never leaves half a checkpoint."""
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.tmp')
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU without unpickling arbitrary objects; ``ValueError`` if it is not one."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exception:
        raise ValueError(f'`{path}` is not a loadable crystalgan checkpoint: {exception}') from exception
    if not isinstance(state, dict) or state.get('format') != FORMAT:
        raise ValueError(f'`{path}` is not a crystalgan checkpoint')
    if state.get('format_version') != FORMAT_VERSION:
        raise ValueError(f'unsupported checkpoint format version {state.get("format_version")!r}')
    return state


def read_checkpoint_summary(path: str | Path) -> dict[str, Any]:
    """What the AiiDA model node records about a checkpoint: JSON-serialisable, no tensors."""
    state = load_checkpoint(path)
    return {
        'format_version': state['format_version'],
        'step': state['step'],
        'config': dict(state['config']),
        'elements': list(state['elements']),
        'n_max': state['config']['n_max'],
        'metrics': dict(state['metrics']),
        'architecture': dict(state['architecture']),
        'normalisation': dict(state['normalisation']),
    }
