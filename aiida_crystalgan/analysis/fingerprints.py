"""Structure and composition fingerprints for the coverage metrics (COV-R / COV-P), without matminer.

``structure_fingerprint`` reproduces the fingerprint CDVAE uses (matminer's
``CrystalNNFingerprint.from_preset('ops')`` averaged over sites): for every coordination number 1 to 24,
the CrystalNN weight of that coordination number, followed, for the motifs of that number, by the weight
times a local structure order parameter (pymatgen's ``LocalStructOrderParams``, with the motif parameters
pymatgen ships in ``cn_opt_params.yaml``). 61 numbers per site, averaged over sites.

``composition_fingerprint`` stands in for matminer's Magpie ``ElementProperty``: six statistics (minimum,
maximum, range, mean, mean absolute deviation, mode) of 13 elemental properties taken from pymatgen,
each divided by the spread of that property over the elements H to Pu, so that a distance between two
fingerprints is in units of "typical differences between elements". The distances are of the same order as
CDVAE's standardised Magpie features but not identical to them.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
from pymatgen.analysis.local_env import CrystalNN, LocalStructOrderParams, cn_opt_params
from pymatgen.core import Composition, Element, Structure

__all__ = ('COMPOSITION_PROPERTIES', 'composition_fingerprint', 'structure_fingerprint')

_MAX_CN = 24
# Motifs besides the CN weight, per coordination number (matminer's ``cn_target_motif_op`` for the 'ops' preset):
# named motifs come with their order parameter and its parameters from pymatgen's ``cn_opt_params``.
_EXTRA_MOTIFS = {1: ['sgl_bd'], 9: ['q2', 'q4', 'q6'], 10: ['q2', 'q4', 'q6'], 11: ['q2', 'q4', 'q6']}


@cache
def _order_parameters() -> dict[int, list[LocalStructOrderParams]]:
    """One order-parameter calculator per (coordination number, motif)."""
    operators: dict[int, list[LocalStructOrderParams]] = {}
    for cn in range(1, _MAX_CN + 1):
        motifs = cn_opt_params.get(cn, {})
        operators[cn] = [
            LocalStructOrderParams([spec[0]], parameters=[spec[1] if len(spec) > 1 else None])
            for spec in motifs.values()
        ]
        extras = _EXTRA_MOTIFS.get(cn, ['q2', 'q4', 'q6'] if cn == 12 else [])
        operators[cn] += [LocalStructOrderParams([kind], parameters=[None]) for kind in extras]
    return operators


def _site_fingerprint(structure: Structure, index: int, crystal_nn: CrystalNN) -> list[float]:
    data = crystal_nn.get_nn_data(structure, index)
    fingerprint: list[float] = []
    for cn, operators in _order_parameters().items():
        weight = float(data.cn_weights.get(cn, 0.0))
        fingerprint.append(weight)
        if not operators:
            continue
        if weight == 0.0:
            fingerprint.extend([0.0] * len(operators))
            continue
        neighbours = [info['site'] for info in data.cn_nninfo[cn]]
        sites = [structure[index], *neighbours]
        for operator in operators:
            value = operator.get_order_parameters(sites, 0, indices_neighs=list(range(1, len(sites))))[0]
            fingerprint.append(weight * float(value or 0.0))
    return fingerprint


def structure_fingerprint(structure: Structure, crystal_nn: CrystalNN | None = None) -> np.ndarray:
    """CDVAE's structural fingerprint: the site-averaged CrystalNN 'ops' fingerprint, shape (61,)."""
    crystal_nn = crystal_nn or CrystalNN()
    return np.mean([_site_fingerprint(structure, index, crystal_nn) for index in range(len(structure))], axis=0)


_VALENCE = re.compile(r'(\d+)([spdf])(\d+)')

COMPOSITION_PROPERTIES = (
    'Z', 'mendeleev_no', 'atomic_mass', 'melting_point', 'group', 'row', 'atomic_radius', 'X',
    'NsValence', 'NpValence', 'NdValence', 'NfValence', 'NValence',
)  # fmt: skip


def _element_property(element: Element, name: str) -> float:
    if name.endswith('Valence'):
        shells = element.electronic_structure.split('.')
        counts = {'s': 0, 'p': 0, 'd': 0, 'f': 0}
        for shell in shells:
            match = _VALENCE.fullmatch(shell)
            if match:
                counts[match.group(2)] += int(match.group(3))
        return float(sum(counts.values()) if name == 'NValence' else counts[name[1]])
    value = getattr(element, name, None)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float('nan')
    return value


@cache
def _property_table() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Element properties (missing ones set to the property's median) and their spread over H..Pu."""
    import warnings

    elements = [Element.from_Z(z) for z in range(1, 95)]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        raw = np.array([[_element_property(e, name) for name in COMPOSITION_PROPERTIES] for e in elements])
    medians = np.nanmedian(raw, axis=0)
    raw = np.where(np.isnan(raw), medians, raw)
    scale = raw.std(axis=0)
    scale[scale == 0] = 1.0
    return {element.symbol: row for element, row in zip(elements, raw)}, scale


def composition_fingerprint(composition: Composition | Structure | str) -> np.ndarray:
    """Magpie-like composition features, shape (6 * 13,): min, max, range, mean, mean abs. deviation, mode."""
    if isinstance(composition, Structure):
        composition = composition.composition
    composition = Composition(composition).element_composition.fractional_composition
    table, scale = _property_table()
    symbols = [element.symbol for element in composition.elements]
    if any(symbol not in table for symbol in symbols):
        raise ValueError(f'no element data for {composition.reduced_formula} (elements beyond Pu)')
    fractions = np.array([composition[symbol] for symbol in symbols])
    values = np.array([table[symbol] for symbol in symbols]) / scale  # (n_elements, n_properties)
    mean = fractions @ values
    deviation = fractions @ np.abs(values - mean)
    majority = np.flatnonzero(np.isclose(fractions, fractions.max()))
    mode = values[majority].min(axis=0)
    minimum, maximum = values.min(axis=0), values.max(axis=0)
    return np.concatenate([minimum, maximum, maximum - minimum, mean, deviation, mode])
