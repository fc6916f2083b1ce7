"""INCAR sets of the VASP engine: ``vasp.yaml`` holds the protocols and the per-operation tags."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

PROTOCOL_FILE = Path(__file__).parent / 'vasp.yaml'


@functools.cache
def _load() -> dict[str, Any]:
    with PROTOCOL_FILE.open(encoding='utf8') as handle:
        return yaml.safe_load(handle)


def load_protocols() -> dict[str, Any]:
    """Return the content of ``vasp.yaml`` (a fresh copy, safe to modify)."""
    return copy.deepcopy(_load())
