"""GAN training through SSH and Slurm: killed by Slurm's time limit, resumed, identical to an uninterrupted run."""

from __future__ import annotations

import time

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


def steps_lasting(seconds: float, gan: dict, records: list[StructureRecord], directory) -> int:
    """The number of training steps of ``gan`` that take about ``seconds`` on this machine (one thread): timed on 200
    steps after a short warm-up run (the first run of a process pays one-time costs that later runs do not)."""
    train(records, GanConfig.from_dict({**gan, 'steps': 20}), directory / 'warm-up', device='cpu')
    started = time.monotonic()
    train(records, GanConfig.from_dict({**gan, 'steps': 200}), directory / 'timed', device='cpu')
    per_step = (time.monotonic() - started) / 200
    return min(max(int(seconds / per_step), 1000), 8000)


def test_training_killed_by_the_slurm_time_limit_resumes_bit_exactly(slurm, tmp_path):
    """A real ``--time`` of one minute: Slurm kills the job, which is resumed from its last periodic checkpoint (as
    often as needed), and the final model equals an uninterrupted run's, bit for bit.

    Slurm enforces time limits in minutes, checked every 30 s, so the job dies 60 to 90 s after it starts: the
    training is sized (calibrated on this machine) to need about 110 s, so that the first job is always killed.
    """
    from aiida_crystalgan.data.dataset import CrystalDatasetData

    records = rattled_records()
    periodic = {**GAN, 'log_every': 50, 'checkpoint_every_steps': 100}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        steps = steps_lasting(110.0, periodic, records, tmp_path / 'calibration')
    finally:
        torch.set_num_threads(threads)
    gan = {**periodic, 'steps': steps}

    dataset = CrystalDatasetData(records).store()
    # No `max_wallclock_seconds`: the training has no soft limit of its own, only Slurm's hard one.
    options = {
        'custom_scheduler_commands': '#SBATCH --time=1',
        'environment_variables': {'OMP_NUM_THREADS': '1'},
    }
    inputs = {
        'train': {
            'code': slurm['crystalgan-train'],
            'dataset': dataset,
            'parameters': orm.Dict(gan),
            'device': orm.Str('cpu'),
            'metadata': {'options': options},
        },
        'max_iterations': orm.Int(8),
    }
    results, node = run_get_node(TrainingWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message

    calculations = sorted(node.called, key=lambda n: n.ctime)
    killed = TrainCalculation.exit_codes.ERROR_EXECUTABLE_CRASHED.status
    assert len(calculations) >= 2
    assert [c.exit_status for c in calculations] == [killed] * (len(calculations) - 1) + [0]
    for calculation in calculations:
        assert calculation.computer.scheduler_type == 'core.slurm'
        script = calculation.base.repository.get_object_content('_aiidasubmit.sh')
        assert '#SBATCH --time=1' in script and '--max-wallclock-seconds' not in script
    for calculation in calculations[:-1]:
        # slurmstepd's own words in the job's stderr: the time limit, not the training, ended it
        stderr = calculation.outputs.retrieved.base.repository.get_object_content('_scheduler-stderr.txt')
        assert 'DUE TO TIME LIMIT' in stderr, stderr
        assert 0 < calculation.outputs.checkpoint.step < steps
    for killed_run, resumed_run in zip(calculations, calculations[1:]):
        assert resumed_run.inputs.parent_model.uuid == killed_run.outputs.checkpoint.uuid
    assert len({c.get_job_id() for c in calculations}) == len(calculations)

    # The same training in one piece, in this process, from the file the jobs read.
    torch.set_num_threads(1)
    try:
        straight = train(
            read_datafile(dataset.write_file(tmp_path / 'dataset.h5')),
            GanConfig.from_dict(gan),
            tmp_path / 'straight',
            device='cpu',
        )
    finally:
        torch.set_num_threads(threads)
    resumed = model_state(results['model'].write_file(tmp_path / 'resumed.pt'))
    reference = model_state(straight.checkpoint_path)
    assert resumed['step'] == reference['step'] == steps
    for name in ('generator', 'generator_ema', 'critic', 'physics'):
        for key, value in reference['models'][name].items():
            assert torch.equal(value, resumed['models'][name][key]), f'{name}.{key} differs'
    for name, optimiser in reference['optimisers'].items():
        for index, state in optimiser['state'].items():
            for key, value in state.items():
                assert torch.equal(value, resumed['optimisers'][name]['state'][index][key]), f'{name} optimiser'
    assert torch.equal(reference['rng']['trainer'], resumed['rng']['trainer'])
    assert torch.equal(reference['rng']['torch'], resumed['rng']['torch'])
    np.testing.assert_array_equal(reference['history']['step'], resumed['history']['step'])
