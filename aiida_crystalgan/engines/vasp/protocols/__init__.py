"""INCAR sets of the VASP engine: ``vasp.yaml`` holds the protocols and the per-operation tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiida_crystalgan.workflows.protocols.utils import load_protocol_file

PROTOCOL_FILE = Path(__file__).parent / 'vasp.yaml'


def load_protocols() -> dict[str, Any]:
    """Return the content of ``vasp.yaml`` through the plugin's protocol loader (a fresh copy, safe to modify)."""
    return load_protocol_file(PROTOCOL_FILE)
