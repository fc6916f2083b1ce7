"""ASE calculators of the universal potentials that the ``mlip`` engine can run (no AiiDA import).

Nothing here has a default: every setting comes from the runner's input, which the ``crystalgan.mlip`` CalcJob's
builder fills from the ``mlip`` protocol (``workflows/protocols/mlip.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _chgnet(settings: dict[str, Any]):
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    model = CHGNet.load(model_name=settings['model_version'], use_device=settings['device'], verbose=False)
    return CHGNetCalculator(model=model, use_device=settings['device'])


def _mace(settings: dict[str, Any]):
    from mace.calculators import mace_mp

    return mace_mp(model=settings['model_path'], device=settings['device'], default_dtype='float64')


def _sevennet(settings: dict[str, Any]):
    from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator(model=settings['model_path'], device=settings['device'])


CALCULATORS: dict[str, Callable[[dict[str, Any]], Any]] = {'chgnet': _chgnet, 'mace': _mace, 'sevennet': _sevennet}
#: The settings of every model: ``model`` and ``device``, and those of the model itself (MACE and SevenNet read a local
#: model file, ``model_path``: nothing is downloaded).
COMMON_SETTINGS = ('model', 'device')
MODEL_SETTINGS = {'chgnet': ('model_version',), 'mace': ('model_path',), 'sevennet': ('model_path',)}
#: The largest atomic number that each model was trained on, where the model is fixed (CHGNet: H to Pu).
MAX_ATOMIC_NUMBER = {'chgnet': 94}


def required_settings(settings: dict[str, Any]) -> tuple[str, ...]:
    """The names of the settings that the model of ``settings`` needs."""
    return (*COMMON_SETTINGS, *MODEL_SETTINGS.get(settings.get('model'), ()))


def unsupported_elements(settings: dict[str, Any], numbers) -> list[str]:
    """The chemical symbols among the atomic ``numbers`` that the model of ``settings`` cannot evaluate."""
    from ase.data import chemical_symbols

    limit = MAX_ATOMIC_NUMBER.get(settings['model'])
    if limit is None:
        return []
    return sorted({chemical_symbols[number] for number in numbers if not 0 < number <= limit})


def load_calculator(settings: dict[str, Any]):
    """Return the ASE calculator named by ``settings['model']``, with the other :func:`required_settings`."""
    name = settings.get('model')
    if name not in CALCULATORS:
        raise ValueError(f'unknown MLIP model `{name}`: choose one of {", ".join(sorted(CALCULATORS))}')
    missing = [key for key in required_settings(settings) if not settings.get(key)]
    if 'model_path' in missing:
        raise ValueError(f'model `{name}` needs `model_path`: a local model file (nothing is downloaded)')
    if missing:
        raise ValueError(f'model `{name}` needs the settings {", ".join(f"`{key}`" for key in missing)}')
    try:
        return CALCULATORS[name](settings)
    except ImportError as exception:
        raise ValueError(f'model `{name}` is not installed: {exception}') from exception
