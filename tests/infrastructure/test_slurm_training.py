"""GAN training through SSH and Slurm: stopped by its wall-clock limit, resumed, identical to an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node

from aiida_crystalgan.calculations.train import TrainCalculation
from aiida_crystalgan.gan import GanConfig, train
from aiida_crystalgan.io import LABELLED, MINIMUM, StructureRecord, read_datafile
from aiida_crystalgan.workflows.training import TrainingWorkChain

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('services')]  # one worker starts and stops the services

GAN = {
    'steps': 2,
    'batch_size': 4,
    'n_max': 4,
    'generator_width': 16,
    'critic_width': 8,
    'physics_width': 8,
    'latent_dim': 8,
    'log_every': 1,
    'physics_warmup_steps': 1,
}


def rattled_records(count: int = 12) -> list[StructureRecord]:
    """Rattled NbO and Nb cells with Lennard-Jones energies and forces; the first half are the critic's minima."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    records = []
    for index in range(count):
        atoms = bulk('Nb', 'bcc', a=3.3, cubic=True) if index % 2 else bulk('NbO', 'rocksalt', a=4.3)
        atoms.rattle(0.05, seed=index)
        atoms.calc = LennardJones(sigma=2.3, epsilon=0.1, rc=6.0)
        role = MINIMUM if index < count // 2 else LABELLED
        records.append(StructureRecord.from_ase(atoms, label=f'lj{index}', role=role))
    return records


def model_state(path) -> dict:
    return torch.load(path, weights_only=True)


def test_training_stopped_by_the_slurm_time_limit_resumes_bit_exactly(slurm, tmp_path):
    """A 1 s limit (Slurm ``--time``) stops every job after one step; the resumed model equals a straight run's."""
    from aiida_crystalgan.data.dataset import CrystalDatasetData

    dataset = CrystalDatasetData(rattled_records()).store()
    options = {'max_wallclock_seconds': 1, 'environment_variables': {'OMP_NUM_THREADS': '1'}}
    inputs = {
        'train': {
            'code': slurm['crystalgan-train'],
            'dataset': dataset,
            'parameters': orm.Dict(GAN),
            'device': orm.Str('cpu'),
            'metadata': {'options': options},
        },
        'max_iterations': orm.Int(5),
    }
    results, node = run_get_node(TrainingWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message

    calculations = sorted(node.called, key=lambda n: n.ctime)
    stopped = TrainCalculation.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT.status
    assert [c.exit_status for c in calculations] == [stopped, 0]
    for calculation in calculations:
        assert calculation.computer.scheduler_type == 'core.slurm'
        assert calculation.get_job_id().isdigit()
        script = calculation.base.repository.get_object_content('_aiidasubmit.sh')
        assert '#SBATCH --time=00:00:01' in script
    assert len({c.get_job_id() for c in calculations}) == 2

    # The same training in one piece, in this process, from the file the jobs read.
    records = read_datafile(dataset.write_file(tmp_path / 'dataset.h5'))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = train(records, GanConfig.from_dict(GAN), tmp_path / 'straight', device='cpu')
    finally:
        torch.set_num_threads(threads)
    resumed = model_state(results['model'].write_file(tmp_path / 'resumed.pt'))
    reference = model_state(straight.checkpoint_path)
    assert resumed['step'] == reference['step'] == GAN['steps']
    for name in ('generator', 'generator_ema', 'critic', 'physics'):
        for key, value in reference['models'][name].items():
            assert torch.equal(value, resumed['models'][name][key]), f'{name}.{key} differs'
    for name, optimiser in reference['optimisers'].items():
        for index, state in optimiser['state'].items():
            for key, value in state.items():
                assert torch.equal(value, resumed['optimisers'][name]['state'][index][key]), f'{name} optimiser'
    assert torch.equal(reference['rng']['trainer'], resumed['rng']['trainer'])
    np.testing.assert_array_equal(reference['history']['step'], resumed['history']['step'])
