"""Datasets built from AiiDA nodes through the ``build_dataset_from_nodes`` calcfunction."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ProcessState
from ase.build import bulk

from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.importers.nodes import build_dataset_from_nodes, collect_group_nodes, import_group


def structure(a: float = 4.2) -> orm.StructureData:
    return orm.StructureData(ase=bulk('NbO', 'rocksalt', a=a))


def trajectory(frames: int = 4) -> orm.TrajectoryData:
    """An MD trajectory as the engines return it: positions, cells, symbols and energies/forces/stress arrays."""
    structures = [structure(4.2 + 0.01 * i) for i in range(frames)]
    node = orm.TrajectoryData(structures)
    node.set_array('energies', -20.0 + 0.1 * np.arange(frames))
    node.set_array('forces', np.full((frames, 2, 3), 0.05))
    node.set_array('stress', np.zeros((frames, 3, 3)))
    node.label = 'md_1000K'
    return node


def result(energy: float, natoms: int = 2) -> orm.ArrayData:
    node = orm.ArrayData()
    node.set_array('forces', np.full((natoms, 3), 0.01))
    node.set_array('stress', np.eye(3) * 0.001)
    node.base.attributes.set_many(
        {'energy': energy, 'energy_per_atom': energy / natoms, 'max_force': 0.017, 'converged': True}
    )
    return node


def engine_process(operation: str, exit_status: int = 0) -> orm.WorkflowNode:
    """A finished engine workchain node with the outputs of ``operation`` linked as the engine returns them."""
    process = orm.WorkflowNode()
    initial = structure().store()
    process.base.links.add_incoming(initial, link_type=LinkType.INPUT_WORK, link_label='structures__s0')
    process.set_process_state(ProcessState.FINISHED)
    process.set_exit_status(exit_status)
    process.store()
    outputs = {'results__s0': result(-21.0)}
    if operation == 'md':
        outputs = {'trajectories__s0': trajectory(3)}
    elif operation == 'relax':
        outputs.update({'relaxed_structures__s0': structure(4.25), 'trajectories__s0': trajectory(2)})  # its steps
    for label, node in outputs.items():
        node.store()
        node.base.links.add_incoming(process, link_type=LinkType.RETURN, link_label=label)
    return process


def test_calcfunction_provenance():
    """Structures, trajectories and results become one dataset whose inputs are those nodes."""
    nodes = {'a': structure().store(), 'traj': trajectory().store()}
    results = {'a': result(-19.5).store()}
    dataset = build_dataset_from_nodes(
        structures=nodes,
        results=results,
        parameters=orm.Dict({'metadata': {'purpose': 'test'}, 'splits': [0.5, 0.25, 0.25], 'group_by': 'source'}),
    )
    assert isinstance(dataset, CrystalDatasetData) and dataset.is_stored
    assert dataset.size == 5 and dataset.base.attributes.get('has_forces')
    assert dataset[0].source == nodes['a'].uuid and dataset[0].energy == pytest.approx(-19.5)
    assert dataset[1].source == nodes['traj'].uuid and dataset[1].label == 'md_1000K:0'
    assert np.allclose(dataset[4].forces, 0.05)
    assert dataset.metadata == {'provider': 'aiida', 'purpose': 'test', 'cleaning': dataset.metadata['cleaning']}
    creator = dataset.creator
    labels = {link.link_label for link in creator.base.links.get_incoming().all()}
    assert {'structures__a', 'structures__traj', 'results__a', 'parameters'} <= labels
    assert {dataset[i].source for i in dataset.get_split('train')} in ({nodes['a'].uuid}, {nodes['traj'].uuid})


def test_calcfunction_errors():
    """Bad inputs make the calcfunction finish with exit status 300 and the reason; no dataset is created."""
    for inputs, message in [
        ({'structures': {'a': structure()}, 'results': {'b': result(-1.0)}}, 'have no structure of the same key'),
        ({'structures': {'a': orm.Int(1)}}, 'give StructureData or TrajectoryData'),
        ({'structures': {'a': structure()}, 'parameters': orm.Dict({'colour': 1})}, "unknown parameters ['colour']"),
        (
            {'structures': {'a': structure()}, 'parameters': orm.Dict({'cleaning': {'min_distance': 5.0}})},
            'cleaning dropped every structure',
        ),
    ]:
        _, node = build_dataset_from_nodes.run_get_node(**inputs)
        assert node.exit_status == 300 and message in node.exit_message
        assert not node.base.links.get_outgoing().all()


def test_group_of_structures():
    group = orm.Group(label='nbo-seeds').store()
    group.add_nodes([structure(4.1).store(), structure(4.3).store(), orm.Int(5).store()])
    dataset = import_group('nbo-seeds')
    assert dataset.size == 2
    assert dataset.metadata['group'] == 'nbo-seeds'
    assert dataset.metadata['skipped_nodes'][0]['reason'] == 'unsupported node type Int'


def test_group_of_engine_processes():
    """Finished relax/forces/md processes give their structures with energies and forces; failed ones are skipped."""
    relax, forces, md, failed = (
        engine_process('relax'),
        engine_process('forces'),
        engine_process('md'),
        engine_process('relax', exit_status=300),
    )
    group = orm.Group(label='engine-runs').store()
    group.add_nodes([relax, forces, md, failed])
    structures, results, skipped = collect_group_nodes(group)
    assert set(structures) == {f'n{relax.pk}_s0', f'n{relax.pk}_s0_steps', f'n{forces.pk}_s0', f'n{md.pk}_s0_md'}
    assert structures[f'n{relax.pk}_s0'].uuid == relax.outputs.relaxed_structures.s0.uuid
    assert structures[f'n{forces.pk}_s0'].uuid == forces.inputs.structures.s0.uuid
    assert [item['pk'] for item in skipped] == [failed.pk]
    dataset = import_group(group, parameters={'folds': 2})
    assert dataset.size == 7 and dataset.base.attributes.get('has_energies')
    assert dataset.num_folds == 2
    assert dataset.base.attributes.get('energy_per_atom')['min'] == pytest.approx(-10.5)


def test_empty_group():
    group = orm.Group(label='empty').store()
    with pytest.raises(ValueError, match='holds no structure'):
        import_group(group)
