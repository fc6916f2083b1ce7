"""Metrics of generated crystals, shared by the workflows and the benchmarks.

Definitions (``n`` = number of generated structures):

* ``structural_validity``: fraction with every distance >= 0.5 Å and a sane volume per atom (CDVAE);
* ``compositional_validity``: fraction charge-balanced (see :mod:`.validity` for the oxidation-state rule);
* ``uniqueness``: distinct structures among the structurally valid ones, over their number;
* ``novelty``: distinct valid structures that match no training structure, over the distinct ones;
* ``match_rate`` / ``rmse``: crystal structure prediction against paired references with CDVAE/DiffCSP's
  ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)``; a reference counts as matched when any of its
  predictions (structurally valid ones only) matches; the RMSE (normalised by ``(V/N)^(1/3)``, pymatgen's
  ``get_rms_dist``) is the best match's, averaged over matched references;
* ``cov_recall`` / ``cov_precision``: CDVAE's coverage, with struct / composition cutoffs 0.4 / 10 on the
  fingerprints of :mod:`.fingerprints`; precision is normalised by ``n`` like CDVAE;
* ``stable_rate``: fraction, among structures with an energy, at most ``stability_threshold`` eV/atom above
  the hull (0.1 eV/atom by default);
* ``sun_rate``: fraction of all ``n`` that are stable, unique (first of their kind), novel and valid;
* ``phonon_stable_rate``: fraction, among structures with a phonon result, whose lowest frequency is not
  below ``-imaginary_tolerance`` THz.

:func:`funnel_metrics` gives the same quantities for a campaign's screening funnel from the counts of each stage,
so that their cost stays linear in the number of generated candidates (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from .fingerprints import composition_fingerprint, structure_fingerprint
from .hull import energy_above_hull
from .matching import BENCHMARK_TOLERANCES, duplicate_indices, make_matcher, reference_matches
from .validity import ValidityCriteria, charge_balanced, structurally_valid

__all__ = (
    'STABILITY_THRESHOLD',
    'compute_metrics',
    'coverage',
    'funnel_metrics',
    'match_rate_and_rmse',
    'phonon_stable_rate',
)

STABILITY_THRESHOLD = 0.1  # eV/atom above the hull
COVERAGE_CUTOFFS = {'struct': 0.4, 'comp': 10.0}  # CDVAE's MP-20 cutoffs


def match_rate_and_rmse(
    predictions: Sequence[Structure | Sequence[Structure]],
    references: Sequence[Structure],
    criteria: ValidityCriteria | None = None,
    matcher: StructureMatcher | None = None,
) -> dict[str, float | int | None]:
    """Match rate and mean RMSE of ``predictions[i]`` (one structure or several samples) against ``references[i]``."""
    if len(predictions) != len(references):
        raise ValueError(f'{len(predictions)} predictions for {len(references)} references: they must be paired')
    matcher = matcher or make_matcher(**BENCHMARK_TOLERANCES)
    best: list[float] = []
    for samples, reference in zip(predictions, references):
        samples = [samples] if isinstance(samples, Structure) else list(samples)
        distances = [
            rms[0]
            for sample in samples
            if len(sample) and structurally_valid(sample, criteria)
            if (rms := matcher.get_rms_dist(sample, reference)) is not None
        ]
        if distances:
            best.append(min(distances))
    n = len(references)
    return {
        'n_references': n,
        'n_matched': len(best),
        'match_rate': len(best) / n if n else None,
        'rmse': float(np.mean(best)) if best else None,
    }


def coverage(
    structures: Sequence[Structure],
    references: Sequence[Structure],
    struct_cutoff: float = COVERAGE_CUTOFFS['struct'],
    comp_cutoff: float = COVERAGE_CUTOFFS['comp'],
    criteria: ValidityCriteria | None = None,
) -> dict[str, float | int | None]:
    """CDVAE's COV-R (references recalled) and COV-P (generated structures close to a reference).

    Only structurally valid generated structures are fingerprinted; COV-P is still divided by all of them.
    """
    if not references:
        raise ValueError('coverage needs at least one reference structure')
    valid = [s for s in structures if len(s) and structurally_valid(s, criteria)]
    if not valid:
        return {'cov_recall': 0.0, 'cov_precision': 0.0 if structures else None}
    distances = {}
    for kind, fingerprint in (('struct', structure_fingerprint), ('comp', composition_fingerprint)):
        generated = np.array([fingerprint(s) for s in valid])
        reference = np.array([fingerprint(s) for s in references])
        distances[kind] = np.linalg.norm(generated[:, None, :] - reference[None, :, :], axis=-1)
    recalled = (distances['struct'].min(axis=0) <= struct_cutoff) & (distances['comp'].min(axis=0) <= comp_cutoff)
    precise = (distances['struct'].min(axis=1) <= struct_cutoff) & (distances['comp'].min(axis=1) <= comp_cutoff)
    return {'cov_recall': float(recalled.mean()), 'cov_precision': float(precise.sum() / len(structures))}


def phonon_stable_rate(
    min_frequencies: Sequence[float | None], imaginary_tolerance: float = 0.1
) -> dict[str, float | int | None]:
    """Fraction of structures whose lowest phonon frequency (THz; imaginary as negative) is >= -tolerance."""
    known = [f for f in min_frequencies if _known(f)]
    stable = sum(f >= -abs(imaginary_tolerance) for f in known)
    return {
        'n_phonons': len(known),
        'n_phonon_stable': int(stable),
        'phonon_stable_rate': stable / len(known) if known else None,
    }


def compute_metrics(
    structures: Sequence[Structure],
    *,
    training: Sequence[Structure] | None = None,
    references: Sequence[Structure] | None = None,
    csp_references: Sequence[Structure] | None = None,
    energies_above_hull: Sequence[float | None] | None = None,
    energies: Sequence[float | None] | None = None,
    phase_diagram: PhaseDiagram | None = None,
    min_phonon_frequencies: Sequence[float | None] | None = None,
    criteria: ValidityCriteria | None = None,
    matcher_tolerances: dict[str, float] | None = None,
    stability_threshold: float = STABILITY_THRESHOLD,
    imaginary_tolerance: float = 0.1,
    struct_cutoff: float = COVERAGE_CUTOFFS['struct'],
    comp_cutoff: float = COVERAGE_CUTOFFS['comp'],
) -> dict[str, float | int | None]:
    """Every metric that the given data allow, as one flat JSON-serialisable dict.

    ``training``: novelty; ``references``: coverage; ``csp_references`` (paired with ``structures``): match
    rate and RMSE; ``energies_above_hull`` (eV/atom) or ``energies`` (total, eV) with ``phase_diagram``:
    stability and S.U.N.; ``min_phonon_frequencies`` (THz): dynamical stability. Per-structure sequences
    are aligned with ``structures``; None (or NaN) marks a missing value.
    """
    structures = list(structures)
    n = len(structures)
    matcher = make_matcher(**(matcher_tolerances or {}))
    metrics: dict[str, float | int | None] = {'n_structures': n}

    valid = [bool(len(s)) and structurally_valid(s, criteria) for s in structures]
    balanced = [bool(len(s)) and charge_balanced(s.composition) for s in structures]
    metrics.update(
        n_structurally_valid=sum(valid),
        structural_validity=_ratio(sum(valid), n),
        compositional_validity=_ratio(sum(balanced), n),
        validity=_ratio(sum(v and b for v, b in zip(valid, balanced)), n),
    )

    valid_indices = [i for i in range(n) if valid[i]]
    duplicate_of = duplicate_indices([structures[i] for i in valid_indices], matcher)
    unique = {i for i, original in zip(valid_indices, duplicate_of) if original is None}
    metrics.update(n_unique=len(unique), uniqueness=_ratio(len(unique), len(valid_indices)))

    novel = None
    if training is not None:
        ordered = sorted(unique)
        matches = reference_matches([structures[i] for i in ordered], list(training), matcher)
        novel = {i for i, match in zip(ordered, matches) if match is None}
        metrics.update(n_novel=len(novel), novelty=_ratio(len(novel), len(unique)))

    if references:
        metrics.update(coverage(structures, list(references), struct_cutoff, comp_cutoff, criteria))

    if csp_references is not None:
        metrics.update(match_rate_and_rmse(structures, list(csp_references), criteria))

    e_hull = _energies_above_hull(structures, energies_above_hull, energies, phase_diagram)
    if e_hull is not None:
        known = [i for i in range(n) if _known(e_hull[i])]
        stable = {i for i in known if e_hull[i] <= stability_threshold}
        values = np.array([e_hull[i] for i in known])
        metrics.update(
            n_with_energy=len(known),
            n_stable=len(stable),
            stable_rate=_ratio(len(stable), len(known)),
            mean_energy_above_hull=float(values.mean()) if known else None,
            median_energy_above_hull=float(np.median(values)) if known else None,
        )
        if novel is not None:
            sun = stable & unique & novel
            metrics.update(n_sun=len(sun), sun_rate=_ratio(len(sun), n))

    if min_phonon_frequencies is not None:
        _check_aligned(min_phonon_frequencies, n, 'min_phonon_frequencies')
        metrics.update(phonon_stable_rate(min_phonon_frequencies, imaginary_tolerance))
    return metrics


def funnel_metrics(
    screening: dict,
    selection: dict,
    evaluation: dict[str, dict],
    num_cheap_pass: int,
    num_references: int | None = None,
) -> dict[str, float | int | None]:
    """The metrics of one round of a campaign's screening funnel, and how many candidates reached each stage.

    ``screening``: the generation executable's counts (``counts``, ``per_composition``); ``selection``: the counts of
    :func:`.screening.select_ranked`; ``evaluation``: one row per fully validated candidate (``is_local_minimum``,
    ``e_above_hull``, ``is_novel``, ``dynamically_stable``, ``rediscovered``, ``passes``); ``num_cheap_pass``: the
    candidates of the cheap engine pass; ``num_references``: the known compound phases that could be rediscovered.

    * ``structural_validity``: generated candidates that pass the fast filters (composition, volume, distances);
    * ``compositional_validity``: generated candidates of a charge-balanced composition;
    * ``uniqueness``: structurally valid candidates that are not near-duplicates by fingerprint;
    * ``novelty``: of the post-processed candidates that are valid and unique, those matching no training structure;
    * ``sun_rate_per_relaxation``: candidates that pass (local minimum within the E_hull window), are novel (and
      unique by construction), over the candidates fully relaxed by the engine;
    * ``phonon_stable_fraction``: of the candidates whose phonons were computed, those without imaginary modes;
    * ``n_rediscovered``: validated candidates that are known phases (``StructureMatcher`` match of a relaxed
      reference and energy within 0.01 eV/atom of it); ``rediscovered_phases``: which (``rediscovery_rate`` over
      ``num_references``).
    """
    counts = screening['counts']
    generated = counts['generated']
    valid = generated - counts['composition'] - counts['volume'] - counts['min_distance']
    balanced = sum(
        row['generated'] for formula, row in screening.get('per_composition', {}).items() if charge_balanced(formula)
    )
    chosen = selection['counts']
    valid_unique = chosen['selected'] + chosen['in_training']
    rows = list(evaluation.values())
    phonons = [row['dynamically_stable'] for row in rows if row.get('dynamically_stable') is not None]
    sun = [row for row in rows if row['passes'] and row['is_novel']]
    phases = sorted({row['rediscovered'] for row in rows if row.get('rediscovered')})
    return {
        'n_generated': generated,
        'n_structurally_valid': valid,
        'n_unique': counts['ranked'],
        'n_examined': chosen['examined'],
        'n_cheap_pass': num_cheap_pass,
        'n_relaxed': len(rows),
        'n_local_minima': sum(bool(row['is_local_minimum']) for row in rows),
        'n_passed': sum(bool(row['passes']) for row in rows),
        'n_sun': len(sun),
        'structural_validity': _ratio(valid, generated),
        'compositional_validity': _ratio(balanced, generated),
        'uniqueness': _ratio(counts['ranked'], valid),
        'novelty': _ratio(chosen['selected'], valid_unique),
        'sun_rate_per_relaxation': _ratio(len(sun), len(rows)),
        'phonon_stable_fraction': _ratio(sum(bool(p) for p in phonons), len(phonons)),
        'n_rediscovered': sum(bool(row.get('rediscovered')) for row in rows),
        'rediscovered_phases': ', '.join(phases),
        'rediscovery_rate': _ratio(len(phases), num_references) if num_references is not None else None,
    }


def _energies_above_hull(
    structures: list[Structure],
    energies_above_hull: Sequence[float | None] | None,
    energies: Sequence[float | None] | None,
    phase_diagram: PhaseDiagram | None,
) -> list[float | None] | None:
    if energies_above_hull is not None:
        _check_aligned(energies_above_hull, len(structures), 'energies_above_hull')
        return [float(e) if _known(e) else None for e in energies_above_hull]
    if energies is None:
        return None
    if phase_diagram is None:
        raise ValueError('total energies need a phase_diagram (built with the same engine) to give hull distances')
    _check_aligned(energies, len(structures), 'energies')
    return [
        energy_above_hull(phase_diagram, s.composition, float(e)) if _known(e) else None
        for s, e in zip(structures, energies)
    ]


def _check_aligned(values: Sequence, n: int, name: str) -> None:
    if len(values) != n:
        raise ValueError(f'{name} has {len(values)} values for {n} structures')


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


def _ratio(count: int, total: int) -> float | None:
    return count / total if total else None
