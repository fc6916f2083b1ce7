"""Calcfunctions of the workflows: every transformation of data between stages is recorded in provenance."""

from __future__ import annotations

import re

from aiida import orm
from aiida.engine import calcfunction

from aiida_crystalgan.data.dataset import CrystalDatasetData, to_record
from aiida_crystalgan.io import MINIMUM


def link_label(text: str) -> str:
    """A valid link label (letters, digits, single underscores) made from ``text``."""
    label = re.sub(r'_+', '_', re.sub(r'\W', '_', text)).strip('_')
    return label if label and not label[0].isdigit() else f's_{label}'


@calcfunction
def prototype_seeds(system: orm.Str, max_atoms: orm.Int) -> dict[str, orm.StructureData]:
    """Seed structures of ``system`` from the built-in prototypes; each records where its data come from."""
    from aiida_crystalgan.structures.prototypes import seed_structures

    outputs = {}
    for seed in seed_structures(system.value, max_atoms=max_atoms.value):
        structure = orm.StructureData(pymatgen=seed.structure)
        structure.base.extras.set_many({'seed_label': seed.label, 'seed_source': seed.source})
        structure.label = seed.label
        outputs[link_label(seed.label)] = structure
    return outputs


@calcfunction
def collect_snapshots(**trajectories: orm.TrajectoryData) -> CrystalDatasetData:
    """Every stored MD frame as one dataset entry with its energy (eV), forces (eV/Å) and stress (eV/Å^3)."""
    def records():
        for key, trajectory in trajectories.items():
            energies = trajectory.get_array('energies')
            forces = trajectory.get_array('forces')
            stress = trajectory.get_array('stress')
            for frame in range(trajectory.numsteps):
                atoms = trajectory.get_step_structure(frame).get_ase()
                yield to_record(atoms, energy=float(energies[frame]), forces=forces[frame], stress=stress[frame],
                                source=trajectory.uuid, label=f'{key}:{frame}')

    return CrystalDatasetData(records(), metadata={'origin': 'md snapshots', 'trajectories': len(trajectories)})


@calcfunction
def merge_training_data(snapshots: CrystalDatasetData, **minima: orm.Data) -> CrystalDatasetData:
    """The training set: MD snapshots plus the relaxed local minima (``structure_<key>`` with ``results_<key>``)."""
    def records():
        yield from snapshots
        for name, structure in minima.items():
            if not name.startswith('structure_'):
                continue
            key = name.removeprefix('structure_')
            results = minima[f'results_{key}']
            yield to_record(structure, energy=results.base.attributes.get('energy'),
                            forces=results.get_array('forces'), stress=results.get_array('stress'),
                            source=structure.uuid, label=f'minimum:{key}', role=MINIMUM)

    return CrystalDatasetData(records(), metadata={'origin': 'md snapshots and local minima',
                                                   'snapshots': snapshots.uuid})


@calcfunction
def summarize_stability(force_tolerance: orm.Float, phonons_checked: orm.Bool, **nodes: orm.Data) -> orm.Dict:
    """Per structure: energy per atom, largest force, phonon minimum frequency, and whether it is a local minimum.

    ``nodes`` holds ``results_<key>`` (relaxation results) and, where phonons ran, ``frequency_<key>`` (THz) and
    ``stable_<key>`` (no imaginary mode). When phonons were checked, a structure without a phonon verdict (its force
    check failed, or its phonon calculation did) is not a local minimum.
    """
    summary = {}
    for name, results in nodes.items():
        if not name.startswith('results_'):
            continue
        key = name.removeprefix('results_')
        max_force = float(results.base.attributes.get('max_force'))
        frequency = nodes.get(f'frequency_{key}')
        stable = nodes.get(f'stable_{key}')
        forces_ok = max_force < force_tolerance.value
        summary[key] = {
            'energy': results.base.attributes.get('energy'),
            'energy_per_atom': results.base.attributes.get('energy_per_atom'),
            'max_force': max_force,
            'converged': results.base.attributes.get('converged'),
            'forces_below_tolerance': forces_ok,
            'min_frequency': None if frequency is None else frequency.value,
            'dynamically_stable': None if stable is None else stable.value,
            'is_local_minimum': bool(forces_ok and (stable.value if stable is not None else not phonons_checked.value)),
        }
    return orm.Dict(summary)



@calcfunction
def postprocess_candidates(candidates: CrystalDatasetData, training: CrystalDatasetData, options: orm.Dict,
                           max_structures: orm.Int) -> dict[str, orm.Data]:
    """Wrap, merge close atoms, symmetrise, drop invalid and duplicate candidates, and keep at most ``max_structures``.

    Returns ``report`` (why each candidate was dropped, counts per reason) and one ``c<index>`` structure per kept
    candidate, chosen round-robin over compositions so that every target composition is validated.
    """
    from aiida_crystalgan.analysis.postprocess import PostprocessOptions, postprocess
    from aiida_crystalgan.analysis.validity import ValidityCriteria

    settings = options.get_dict()
    criteria = ValidityCriteria(**settings.pop('validity', {}))
    result = postprocess([record.to_pymatgen() for record in candidates],
                         training=[record.to_pymatgen() for record in training],
                         options=PostprocessOptions(validity=criteria, **settings))
    by_formula: dict[str, list[int]] = {}
    for position, structure in enumerate(result.structures):
        by_formula.setdefault(structure.composition.reduced_formula, []).append(position)
    chosen: list[int] = []
    while len(chosen) < min(max_structures.value, len(result.structures)):
        for positions in by_formula.values():
            if positions and len(chosen) < max_structures.value:
                chosen.append(positions.pop(0))
    outputs: dict[str, orm.Data] = {}
    for position in sorted(chosen):
        index = result.kept_indices[position]
        structure = orm.StructureData(pymatgen=result.structures[position])
        report = result.reports[index]
        structure.base.extras.set_many({'spacegroup': report.spacegroup_symbol, 'candidate_index': index})
        outputs[f'c{index}'] = structure
    summary = result.to_dict()
    summary['selected_for_validation'] = sorted(f'c{result.kept_indices[p]}' for p in chosen)
    outputs['report'] = orm.Dict(summary)
    return outputs


@calcfunction
def evaluate_candidates(stability: orm.Dict, training: CrystalDatasetData, **nodes: orm.Data) -> orm.Dict:
    """Energy above the convex hull (eV/atom), space group and novelty of every relaxed candidate.

    ``nodes`` holds ``reference_structure_<key>`` / ``reference_results_<key>`` (the relaxed reference phases, same
    engine) and ``structure_<key>`` / ``results_<key>`` (the relaxed candidates).
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from aiida_crystalgan.analysis.hull import build_phase_diagram, energy_above_hull
    from aiida_crystalgan.analysis.matching import make_matcher, reference_matches

    def pairs(prefix: str):
        for name, structure in nodes.items():
            if name.startswith(f'{prefix}structure_'):
                key = name.removeprefix(f'{prefix}structure_')
                yield key, structure.get_pymatgen(), nodes[f'{prefix}results_{key}'].base.attributes.get('energy')

    diagram = build_phase_diagram([(structure, energy) for _, structure, energy in pairs('reference_')])
    candidates = list(pairs(''))
    training_structures = [record.to_pymatgen() for record in training]
    matches = reference_matches([structure for _, structure, _ in candidates], training_structures, make_matcher())
    verdicts = stability.get_dict()
    evaluation = {}
    for (key, structure, energy), match in zip(candidates, matches):
        try:
            spacegroup = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_symbol()
        except Exception:  # noqa: BLE001 - spglib may fail on a badly distorted cell
            spacegroup = 'P1'
        evaluation[key] = {
            **verdicts[key],
            'formula': structure.composition.reduced_formula,
            'spacegroup': spacegroup,
            'num_atoms': len(structure),
            'e_above_hull': energy_above_hull(diagram, structure.composition, energy),
            'is_novel': match is None,
        }
    return orm.Dict(evaluation)
