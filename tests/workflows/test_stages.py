"""The stage workchains on tiny inputs, and their answers to bad input."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from pymatgen.core import Lattice, Structure

from aiida_crystalgan.workflows.sampling import SamplingWorkChain
from aiida_crystalgan.workflows.seeds import SeedsWorkChain


def count_process_nodes() -> int:
    return orm.QueryBuilder().append(orm.ProcessNode).count()


def engine(mlip_code) -> dict:
    return {'code': mlip_code}


def test_seeds_from_prototypes_and_user_structures():
    user = orm.StructureData(pymatgen=Structure(Lattice.cubic(4.2), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    builder = SeedsWorkChain.get_builder_from_protocol('Nb-O', overrides={'max_atoms': 2}, structures={'mine': user})
    results, node = run_get_node(builder)
    assert node.is_finished_ok
    seeds = results['structures']
    assert seeds['user_mine'].uuid == user.uuid
    formulas = {s.get_pymatgen().composition.reduced_formula for s in seeds.values()}
    assert {'Nb', 'NbO'} <= formulas
    created = [s for key, s in seeds.items() if key != 'user_mine']
    assert all(s.creator.process_label == 'prototype_seeds' for s in created)


def test_seeds_reject_foreign_elements():
    titania = orm.StructureData(pymatgen=Structure(Lattice.cubic(4.0), ['Ti', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    _, node = run_get_node(SeedsWorkChain.get_builder_from_protocol('Nb-O', structures={'tio': titania}))
    assert node.exit_status == SeedsWorkChain.exit_codes.ERROR_FOREIGN_ELEMENTS.status
    assert "['Ti']" in node.exit_message


@pytest.mark.parametrize(
    ('system', 'message'),
    [
        ('Nb--O', 'empty element'),
        ('Xx-O', 'not an element'),
        ('', 'non-empty'),
        ('Nb-Nb', 'repeated'),
    ],
)
def test_seeds_reject_malformed_systems_without_storing_a_node(system, message):
    before = count_process_nodes()
    with pytest.raises(ValueError, match=message):
        run_get_node(SeedsWorkChain.get_builder_from_protocol(system))
    assert count_process_nodes() == before


def test_sampling_collects_snapshots_with_energies_and_forces(mlip_code):
    nb = orm.StructureData(pymatgen=Structure(Lattice.cubic(3.32), ['Nb', 'Nb'], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    parameters = {'temperatures': [300, 1200], 'steps': 8, 'timestep': 2.0, 'sample_interval': 4}
    results, node = run_get_node(
        SamplingWorkChain, structures={'nb': nb}, parameters=orm.Dict(parameters), engine=engine(mlip_code)
    )
    assert node.is_finished_ok, node.exit_message
    assert set(results['trajectories']) == {'nb_300K', 'nb_1200K'}
    snapshots = results['snapshots']
    assert snapshots.size == 6
    assert snapshots.base.attributes.get('has_forces') and snapshots.base.attributes.get('has_energies')
    assert snapshots[0].source in {t.uuid for t in results['trajectories'].values()}


@pytest.mark.parametrize(
    ('parameters', 'message'),
    [
        ({'temperatures': [300, -10], 'steps': 5, 'timestep': 1}, 'must be positive'),
        ({'temperatures': [], 'steps': 5, 'timestep': 1}, 'non-empty list'),
        ({'temperatures': [300], 'steps': 0, 'timestep': 1}, '`steps` must be positive'),
        ({'temperatures': [300], 'steps': 5, 'timestep': -1}, '`timestep` must be positive'),
    ],
)
def test_sampling_rejects_bad_parameters_without_storing_a_node(mlip_code, parameters, message):
    nb = orm.StructureData(pymatgen=Structure(Lattice.cubic(3.32), ['Nb'], [[0, 0, 0]]))
    before = count_process_nodes()
    with pytest.raises(ValueError, match=message):
        run_get_node(
            SamplingWorkChain, structures={'nb': nb}, parameters=orm.Dict(parameters), engine=engine(mlip_code)
        )
    assert count_process_nodes() == before


def test_sampling_rejects_empty_structure_list(mlip_code):
    parameters = {'temperatures': [300], 'steps': 5, 'timestep': 1}
    with pytest.raises(ValueError, match='namespace is empty'):
        run_get_node(SamplingWorkChain, structures={}, parameters=orm.Dict(parameters), engine=engine(mlip_code))
