"""Checkpoint files: plain dicts of tensors and Python primitives, loaded with ``torch.load(weights_only=True)``.

Every file of a run is replaced atomically (temporary file in the same folder, then ``os.replace``), so a job killed
at any moment leaves either the previous version or the new one, never half a file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

FORMAT = 'crystalgan-checkpoint'
FORMAT_VERSION = 1


@contextlib.contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path`` in one step, on error it is removed."""
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.tmp')
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    with replaced_atomically(path) as temporary:
        temporary.write_text(text)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically and flushed to disk, so a killed job or a crashed node never leaves half of it."""
    with replaced_atomically(path) as temporary, temporary.open('wb') as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())


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
