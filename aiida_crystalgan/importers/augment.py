"""Data augmentation of structure records: supercells, random translations and permutations, and substitution.

Supercells, translations and permutations keep energies (extensive energies scale with the supercell), forces
(tiled, shifted or permuted with the atoms) and stress. Substitution puts the elements of the target system into
prototypes of chemically similar systems, choosing the most probable substitution of pymatgen's data-mined
substitution probabilities (``SubstitutionProbability``, the model behind ``SubstitutionPredictor``, its data bundled
with pymatgen; Hautier et al., Inorg. Chem. 50, 656 (2011)). Substituted prototypes have no energy and keep the
prototype's cell: relax them before training.

Every copy keeps the role of its parent. Supercells, translations and permutations describe the same crystal, so the
copies of a ``minimum`` are minima (symmetry-preserving augmentation of real data) and those of a ``labelled``
structure keep their labels. A substituted ``minimum`` prototype stays a ``minimum``, but only as a candidate: it is not
relaxed and has no energy, so it never counts as labelled data (:func:`aiida_crystalgan.gan.data.split_by_role`), and
a quench with the engine decides whether it is a minimum of the target system.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from aiida_crystalgan.io.datafile import StructureRecord

from .cleaning import CleaningReport

__all__ = ('AugmentOptions', 'augment_records', 'permute', 'substitute', 'supercells', 'translate')


@dataclass
class AugmentOptions:
    """What to add. Every option is recorded with the augmented dataset; ``seed`` makes the result reproducible."""

    supercell_max_atoms: int | None = None
    supercells_per_structure: int = 3
    translations: int = 0
    permutations: int = 0
    substitution_elements: list[str] | None = None
    substitution_threshold: float = 1e-3
    keep_original: bool = True
    seed: int = 0

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> AugmentOptions:
        unknown = set(options or {}) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f'unknown augmentation options {sorted(unknown)}')
        return cls(**(options or {}))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _copy(record: StructureRecord, suffix: str, **changes: Any) -> StructureRecord:
    values = {
        'numbers': record.numbers,
        'positions': record.positions,
        'cell': record.cell,
        'energy': record.energy,
        'forces': record.forces,
        'stress': record.stress,
        'source': record.source,
        'role': record.role,
        'label': f'{record.label}+{suffix}' if record.label else suffix,
    }
    values.update(changes)
    return StructureRecord(**values)


def supercells(record: StructureRecord, max_atoms: int, count: int = 3) -> list[StructureRecord]:
    """Up to ``count`` diagonal supercells (multipliers 1-3, smallest first) of at most ``max_atoms`` atoms."""
    multipliers = sorted(
        (
            m
            for m in itertools.product(range(1, 4), repeat=3)
            if m != (1, 1, 1) and record.num_atoms * np.prod(m) <= max_atoms
        ),
        key=lambda m: (int(np.prod(m)), m[::-1]),
    )[:count]
    result = []
    for multiplier in multipliers:
        images = np.array(list(itertools.product(*(range(n) for n in multiplier)))) @ record.cell
        factor = int(np.prod(multiplier))
        result.append(
            _copy(
                record,
                'x'.join(map(str, multiplier)),
                numbers=np.tile(record.numbers, factor),
                positions=(images[:, None, :] + record.positions[None, :, :]).reshape(-1, 3),
                cell=record.cell * np.array(multiplier)[:, None],
                energy=None if record.energy is None else record.energy * factor,
                forces=None if record.forces is None else np.tile(record.forces, (factor, 1)),
            )
        )
    return result


def translate(record: StructureRecord, rng: np.random.Generator, tag: str = 't') -> StructureRecord:
    """A copy rigidly shifted by a random fraction of the cell, atoms wrapped back into it."""
    fractional = np.linalg.solve(record.cell.T, record.positions.T).T + rng.random(3)
    return _copy(record, tag, positions=(fractional % 1.0) @ record.cell)


def permute(record: StructureRecord, rng: np.random.Generator, tag: str = 'p') -> StructureRecord:
    """A copy with the atoms (and their forces) in a random order."""
    order = rng.permutation(record.num_atoms)
    return _copy(
        record,
        tag,
        numbers=record.numbers[order],
        positions=record.positions[order],
        forces=None if record.forces is None else record.forces[order],
    )


@lru_cache(maxsize=1)
def _substitution_model():
    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

    return SubstitutionProbability()


def substitute(
    record: StructureRecord, elements: list[str], threshold: float = 1e-3
) -> tuple[StructureRecord | None, str]:
    """The prototype ``record`` with its elements replaced by ``elements`` (the most probable substitution).

    Oxidation states of the prototype are guessed from its composition; every assignment of ``elements`` species of
    the same charge sign is scored by its conditional substitution probability. Returns ``(None, reason)`` when
    nothing scores above ``threshold``, else ``(record, description)``.
    """
    from ase.data import atomic_numbers, chemical_symbols
    from pymatgen.core import Composition, Species

    present = sorted({chemical_symbols[z] for z in record.numbers})
    if set(present) <= set(elements):
        return None, f'already made of {present}'
    formula = Composition(dict(zip(*np.unique([chemical_symbols[z] for z in record.numbers], return_counts=True))))
    guesses = formula.reduced_composition.oxi_state_guesses(max_sites=-20)
    if not guesses:
        return None, f'no oxidation states of {formula.reduced_formula}'
    model = _substitution_model()
    old = [Species(element, oxi) for element, oxi in guesses[0].items()]
    unknown = [str(species) for species in old if species not in model.species]
    if unknown:
        return None, f'species {unknown} are not in the substitution probability model'
    candidates = [
        [
            new
            for new in model.species
            if new.symbol in elements and np.sign(new.oxi_state) == np.sign(species.oxi_state)
        ]
        for species in old
    ]
    scored = [
        (model.cond_prob_list(list(new), old), new)
        for new in itertools.product(*candidates)
        if len({species.symbol for species in new}) == len(new)
    ]
    probability, best = max(scored, key=lambda item: item[0], default=(0.0, ()))
    if probability < threshold:
        return None, f'no substitution of {[str(s) for s in old]} into {elements} above probability {threshold}'
    mapping = {species.symbol: new.symbol for species, new in zip(old, best)}
    numbers = [atomic_numbers[mapping[chemical_symbols[z]]] for z in record.numbers]
    description = ','.join(f'{a}->{b}' for a, b in sorted(mapping.items()) if a != b)
    return _copy(record, f'sub({description})', numbers=numbers, energy=None, forces=None, stress=None), (
        f'{description} (probability {probability:.3g})'
    )


def augment_records(
    records: Iterable[StructureRecord], options: AugmentOptions, report: CleaningReport | None = None
) -> Iterator[StructureRecord]:
    """Yield the (optionally kept) originals followed by their augmented copies, deterministically for a seed.

    Prototypes that cannot be substituted are dropped and recorded in ``report``.
    """
    rng = np.random.default_rng(options.seed)
    for index, record in enumerate(records):
        if options.substitution_elements:
            substituted, detail = substitute(record, options.substitution_elements, options.substitution_threshold)
            if substituted is None:
                if report is not None:
                    report.num_input += 1
                    report.drop('unsupported_element', f'not substituted: {detail}', index, record.source, record.label)
                continue
            record = substituted
        bases = [record]
        if options.supercell_max_atoms:
            bases.extend(supercells(record, options.supercell_max_atoms, options.supercells_per_structure))
        if options.keep_original:
            yield from bases
        for base in bases:
            for i in range(options.translations):
                yield translate(base, rng, f't{i}')
            for i in range(options.permutations):
                yield permute(base, rng, f'p{i}')
