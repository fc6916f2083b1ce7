"""A finished campaign made of stored nodes (no processes run): reference phases, two predicted structures evaluated
by the product's own ``evaluate_candidates`` calcfunction, a training set, and the phonons of one structure.
"""

from __future__ import annotations

import numpy as np
import pytest

REFERENCES = {  # label: (symbols, cubic lattice constant in Å, fractional positions, energy per atom in eV)
    'Nb': (['Nb'], 3.3, [[0, 0, 0]], -10.1),
    'O2': (['O', 'O'], 4.0, [[0, 0, 0], [0.3, 0, 0]], -4.9),
    'NbO': (['Nb', 'O'], 4.2, [[0, 0, 0], [0.5, 0.5, 0.5]], -8.6),
}
CANDIDATES = {  # key: (symbols, cubic lattice constant in Å, fractional positions, energy per atom in eV)
    'c3': (['Nb', 'O', 'O'], 4.8, [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]], -7.30),
    'c7': (['Nb', 'O'], 4.3, [[0, 0, 0], [0.5, 0.5, 0.5]], -8.45),
}


def cubic_structure(symbols, constant, positions):
    from aiida import orm

    structure = orm.StructureData(cell=np.eye(3) * constant)
    for symbol, position in zip(symbols, positions):
        structure.append_atom(symbols=symbol, position=np.dot(position, structure.cell))
    return structure


def relaxation_results(structure, energy_per_atom: float):
    """Engine results as the MLIP engine stores them: energy attributes and forces, stress arrays."""
    from aiida import orm

    results = orm.ArrayData()
    results.set_array('forces', np.zeros((len(structure.sites), 3)))
    results.set_array('stress', np.zeros((3, 3)))
    results.base.attributes.set_many(
        {
            'energy': energy_per_atom * len(structure.sites),
            'energy_per_atom': energy_per_atom,
            'max_force': 0.01,
            'converged': True,
        }
    )
    return results.store()


def force_constants(structure):
    """Real force constants of ``structure`` (Lennard-Jones forces, 2x2x2 supercell) as aiida-phonopy data."""
    from aiida_phonopy.data import ForceConstantsData
    from ase import Atoms
    from ase.calculators.lj import LennardJones
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    supercell_matrix = np.diag([2, 2, 2]).tolist()
    atoms = structure.get_ase()
    phonopy = Phonopy(
        PhonopyAtoms(
            symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:], scaled_positions=atoms.get_scaled_positions()
        ),
        supercell_matrix=supercell_matrix,
    )
    phonopy.generate_displacements(distance=0.01)
    forces = []
    for supercell in phonopy.supercells_with_displacements:
        displaced = Atoms(supercell.symbols, cell=supercell.cell, scaled_positions=supercell.scaled_positions, pbc=True)
        displaced.calc = LennardJones(sigma=1.8, epsilon=0.5, rc=4.0)
        forces.append(displaced.get_forces())
    phonopy.forces = np.array(forces)
    phonopy.produce_force_constants()
    data = ForceConstantsData(structure=structure, supercell_matrix=supercell_matrix)
    data.set_force_constants(phonopy.force_constants)
    return data.store()


def finished_process(process_class, inputs: dict, outputs: dict):
    """A stored, finished (exit status 0) process node of ``process_class`` linked to ``inputs`` and ``outputs``."""
    from aiida import orm
    from aiida.common.links import LinkType
    from plumpy import ProcessState

    node = orm.WorkChainNode(process_type=process_class.build_process_type())
    node.set_process_label(process_class.__name__)
    for label, source in inputs.items():
        node.base.links.add_incoming(source, link_type=LinkType.INPUT_WORK, link_label=label)
    node.set_process_state(ProcessState.FINISHED)
    node.set_exit_status(0)
    node.store()
    for label, target in outputs.items():
        target.base.links.add_incoming(node, link_type=LinkType.RETURN, link_label=label)
    node.seal()
    return node


@pytest.fixture
def finished_campaign(aiida_profile):
    """Factory of a finished Nb-O campaign with two predicted structures; the first (NbO2) has phonons."""

    def factory():
        from aiida import orm

        from aiida_crystalgan.data.dataset import MINIMUM, CrystalDatasetData
        from aiida_crystalgan.workflows.campaign import CampaignWorkChain
        from aiida_crystalgan.workflows.generation import evaluate_candidates, funnel_metrics
        from aiida_crystalgan.workflows.phonons import PhononWorkChain

        nodes, summary, predicted = {}, {}, {}
        references = {key: cubic_structure(*values[:3]).store() for key, values in REFERENCES.items()}
        for key, structure in references.items():
            nodes[f'reference_structure_{key}'] = structure
            nodes[f'reference_results_{key}'] = relaxation_results(structure, REFERENCES[key][3])
        for key, (*geometry, energy) in CANDIDATES.items():
            structure = predicted[key] = cubic_structure(*geometry).store()
            nodes[f'structure_{key}'] = structure
            nodes[f'results_{key}'] = relaxation_results(structure, energy)
            summary[key] = {
                'energy_per_atom': energy,
                'max_force': 0.01,
                'converged': True,
                'forces_below_tolerance': True,
                'min_frequency': None,
                'dynamically_stable': None,
                'is_local_minimum': True,
            }
        training = CrystalDatasetData.from_structures(
            list(references.values()),
            energies=[REFERENCES[key][3] * len(s.sites) for key, s in references.items()],
            labels=list(references),
            roles=MINIMUM,
        ).store()
        outputs = evaluate_candidates(orm.Dict(summary).store(), training, orm.Float(0.5).store(), **nodes)
        evaluation = outputs['evaluation']
        for key, values in evaluation.get_dict().items():
            predicted[key].base.extras.set_many({f'crystalgan_{name}': value for name, value in values.items()})
        screening = orm.Dict(
            {
                'counts': {
                    'generated': 40,
                    'composition': 0,
                    'volume': 6,
                    'min_distance': 4,
                    'duplicate': 10,
                    'ranked': 20,
                },
                'per_composition': {'NbO2': {'generated': 20, 'ranked': 12}, 'NbO': {'generated': 20, 'ranked': 8}},
            }
        ).store()
        selection = orm.Dict({'counts': {'examined': 5, 'selected': 3, 'in_training': 1, 'duplicate': 1}}).store()
        cheap_pass = orm.Dict({'e_above_hull': {'c3': 0.3, 'c7': 0.1, 'c9': 0.9}, 'known_phases': 1}).store()
        metrics = funnel_metrics(
            screening_gan=screening, selection_gan=selection, cheap_pass_gan=cheap_pass, evaluation_gan=evaluation
        )

        finished_process(
            PhononWorkChain, {'structure': predicted['c3']}, {'force_constants': force_constants(predicted['c3'])}
        )
        campaign = finished_process(
            CampaignWorkChain,
            {'system': orm.Str('Nb-O').store(), 'engine__name': orm.Str('mlip').store()},
            {
                'dataset': training,
                'evaluation': evaluation,
                'metrics': metrics,
                **{f'predicted__{key}': structure for key, structure in predicted.items()},
            },
        )
        campaign.base.extras.set('crystalgan_stage', 'finished')
        return campaign

    return factory
