"""ASE calculators of the universal potentials that the ``mlip`` engine can run (no AiiDA import)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _chgnet(settings: dict[str, Any]):
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    model = CHGNet.load(model_name=settings.get('model_version', '0.3.0'), use_device='cpu', verbose=False)
    return CHGNetCalculator(model=model, use_device=settings.get('device', 'cpu'))


def _mace(settings: dict[str, Any]):
    from mace.calculators import mace_mp

    return mace_mp(model=settings['model_path'], device=settings.get('device', 'cpu'), default_dtype='float64')


def _sevennet(settings: dict[str, Any]):
    from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator(model=settings['model_path'], device=settings.get('device', 'cpu'))


CALCULATORS: dict[str, Callable[[dict[str, Any]], Any]] = {'chgnet': _chgnet, 'mace': _mace, 'sevennet': _sevennet}
NEEDS_MODEL_PATH = {'mace', 'sevennet'}
#: The largest atomic number that each model was trained on, where the model is fixed (CHGNet: H to Pu).
MAX_ATOMIC_NUMBER = {'chgnet': 94}


def unsupported_elements(settings: dict[str, Any], numbers) -> list[str]:
    """The chemical symbols among the atomic ``numbers`` that the model of ``settings`` cannot evaluate."""
    from ase.data import chemical_symbols

    limit = MAX_ATOMIC_NUMBER.get(settings.get('model', 'chgnet'))
    if limit is None:
        return []
    return sorted({chemical_symbols[number] for number in numbers if not 0 < number <= limit})


def load_calculator(settings: dict[str, Any]):
    """Return the ASE calculator named by ``settings['model']`` (default ``chgnet``)."""
    name = settings.get('model', 'chgnet')
    if name not in CALCULATORS:
        raise ValueError(f'unknown MLIP model `{name}`: choose one of {", ".join(sorted(CALCULATORS))}')
    if name in NEEDS_MODEL_PATH and not settings.get('model_path'):
        raise ValueError(f'model `{name}` needs `model_path`: a local model file (nothing is downloaded)')
    try:
        return CALCULATORS[name](settings)
    except ImportError as exception:
        raise ValueError(f'model `{name}` is not installed: {exception}') from exception
