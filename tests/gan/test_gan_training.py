"""Training: bit-exact resume, safe checkpoints, the physics head learns, generation honours compositions."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from aiida_crystalgan.gan import (
    CrystalGan,
    GanConfig,
    NoMinimaError,
    TrainingDiverged,
    generate,
    read_checkpoint_summary,
    train,
)
from aiida_crystalgan.gan.checkpoint import load_checkpoint, replaced_atomically
from aiida_crystalgan.gan.data import (
    build_training_set,
    conditions,
    element_vocabulary,
    energy_floors,
    fit_normalisation,
    shortest_distances,
    slot_species,
    training_records,
)
from aiida_crystalgan.gan.generation import load_generator
from aiida_crystalgan.gan.representation import CrystalBatch, batch_to_records
from aiida_crystalgan.gan.trainer import LOSS_COLUMNS, Trainer
from aiida_crystalgan.gan.training import featurize
from aiida_crystalgan.io import LABELLED, MINIMUM, StructureRecord


@pytest.fixture(scope='session')
def tiny_config(tiny_gan):
    """Return a factory of the smallest ``GanConfig`` (``TINY_GAN`` of the shared fixtures), updated by keywords."""

    def factory(**values) -> GanConfig:
        return GanConfig.from_dict(tiny_gan(**values))

    return factory


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory, make_records, tiny_config):
    """A checkpoint after one training step on the tiny dataset."""
    directory = tmp_path_factory.mktemp('model')
    return train(make_records(), tiny_config(steps=1), directory, device='cpu').checkpoint_path


def assert_same_state(first: dict, second: dict) -> None:
    for name in ('generator', 'generator_ema', 'critic', 'physics'):
        for key, value in first['models'][name].items():
            assert torch.equal(value, second['models'][name][key]), f'{name}.{key} differs'
    for name, optimiser in first['optimisers'].items():
        for index, state in optimiser['state'].items():
            for key, value in state.items():
                assert torch.equal(value, second['optimisers'][name]['state'][index][key]), f'{name} optimiser'
    assert set(first['rng']) == set(second['rng']) == {'trainer', 'torch', 'cuda'}, 'only the training RNGs are saved'
    assert torch.equal(first['rng']['trainer'], second['rng']['trainer'])
    assert torch.equal(first['rng']['torch'], second['rng']['torch'])
    for column in LOSS_COLUMNS[:-1]:
        assert first['history'][column] == second['history'][column]


def test_resume_is_bit_exact(tmp_path, records, tiny_config):
    straight = train(records, tiny_config(steps=4), tmp_path / 'straight', device='cpu')
    train(records, tiny_config(steps=2), tmp_path / 'first', device='cpu')
    resumed = train(
        records, tiny_config(steps=4), tmp_path / 'second', resume=tmp_path / 'first' / 'model.pt', device='cpu'
    )
    assert straight.completed and resumed.completed
    first = torch.load(straight.checkpoint_path, weights_only=True)
    second = torch.load(resumed.checkpoint_path, weights_only=True)
    assert first['step'] == second['step'] == 4
    assert_same_state(first, second)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no ``except Exception`` catches it."""


@pytest.mark.parametrize(
    'interval', [{'checkpoint_every_steps': 2}, {'checkpoint_every_steps': 0, 'checkpoint_every_minutes': 1e-6}]
)
def test_resume_from_a_periodic_checkpoint_after_a_kill_is_bit_exact(
    tmp_path, records, monkeypatch, interval, tiny_config
):
    """A run killed during step 3 left the checkpoint of step 2 (by steps, or by minutes: then after every step);
    resuming from it ends in exactly the state of an uninterrupted run.
    """
    config = tiny_config(steps=4, **interval)
    straight = train(records, config, tmp_path / 'straight', device='cpu')
    assert not (tmp_path / 'straight' / 'checkpoint.pt').exists()

    take_step = Trainer.train_step

    def killed_during_step_3(trainer, *args):
        if trainer.step == 2:
            raise Killed
        take_step(trainer, *args)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, 'train_step', killed_during_step_3)
        with pytest.raises(Killed):
            train(records, config, tmp_path / 'killed', device='cpu')
    assert not (tmp_path / 'killed' / 'model.pt').exists()
    assert load_checkpoint(tmp_path / 'killed' / 'checkpoint.pt')['step'] == 2
    resumed = train(records, config, tmp_path / 'resumed', resume=tmp_path / 'killed' / 'checkpoint.pt', device='cpu')
    first = torch.load(straight.checkpoint_path, weights_only=True)
    second = torch.load(resumed.checkpoint_path, weights_only=True)
    assert first['step'] == second['step'] == 4
    assert_same_state(first, second)


def test_atomic_replacement_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / 'losses.csv'
    path.write_text('old')
    with pytest.raises(KeyboardInterrupt), replaced_atomically(path) as temporary:
        temporary.write_text('half written')
        raise KeyboardInterrupt
    assert path.read_text() == 'old'
    assert list(tmp_path.iterdir()) == [path]


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, records, monkeypatch, tiny_config):
    """A NaN loss at step 4 stops training with ``TrainingDiverged``; the checkpoint of step 2 stays as it was."""
    from aiida_crystalgan.gan import trainer as trainer_module

    penalty = trainer_module.volume_penalty
    calls = []

    def nan_from_step_4(*args):
        calls.append(None)
        return penalty(*args) * (math.nan if len(calls) >= 4 else 1.0)

    monkeypatch.setattr(trainer_module, 'volume_penalty', nan_from_step_4)
    with pytest.raises(TrainingDiverged, match='diverged at step 4') as diverged:
        train(records, tiny_config(steps=10, checkpoint_every_steps=2), tmp_path, device='cpu')
    checkpoint = tmp_path / 'checkpoint.pt'
    assert diverged.value.step == 4 and diverged.value.checkpoint_path == checkpoint
    assert set(diverged.value.losses) == {'generator_loss', 'volume_penalty'}
    state = load_checkpoint(checkpoint)
    assert state['step'] == 2 and state['history']['step'] == [1, 2]
    assert all(torch.isfinite(value).all() for value in state['models']['generator'].values())
    assert not (tmp_path / 'model.pt').exists()


def test_a_huge_learning_rate_diverges_before_any_checkpoint(tmp_path, records, tiny_config):
    with pytest.raises(TrainingDiverged, match='no checkpoint to resume from') as diverged:
        train(records, tiny_config(steps=50, critic_lr=1e30, generator_lr=1e30), tmp_path, device='cpu')
    assert diverged.value.checkpoint_path is None
    assert not (tmp_path / 'checkpoint.pt').exists() and not (tmp_path / 'model.pt').exists()


def test_model_rebuilds_itself_from_its_checkpoint(tiny_model):
    state = load_checkpoint(tiny_model)
    model = CrystalGan.load(tiny_model)
    assert model.elements == ['O', 'Nb'] and model.config == GanConfig.from_dict(state['config'])
    again = CrystalGan.from_dict(model.as_dict())
    for name in CrystalGan.NETWORKS:
        saved = state['models'][name]
        for source in (model, again):
            assert all(torch.equal(value, saved[key]) for key, value in getattr(source, name).state_dict().items())
    generator = load_generator(state, torch.device('cpu'))
    assert all(
        torch.equal(value, state['models']['generator_ema'][key]) for key, value in generator.state_dict().items()
    )


def test_checkpoint_is_plain_data_and_summarised(tmp_path, records, tiny_config):
    result = train(records, tiny_config(steps=2), tmp_path, device='cpu')
    state = torch.load(result.checkpoint_path, weights_only=True)
    assert set(state) >= {'models', 'optimisers', 'rng', 'step', 'config', 'normalisation', 'elements', 'history'}
    assert state['elements'] == ['O', 'Nb']
    summary = read_checkpoint_summary(result.checkpoint_path)
    json.dumps(summary)
    assert summary['step'] == 2 and summary['n_max'] == 8 and summary['elements'] == ['O', 'Nb']
    assert summary['architecture']['parameters']['generator'] > 0
    assert summary['metrics']['device'] == 'cpu'
    assert summary['metrics']['physics_training_mae_ev_per_atom'] > 0
    assert (tmp_path / 'losses.csv').read_text().splitlines()[0] == ','.join(LOSS_COLUMNS)


def test_resume_rejects_architecture_change_and_unknown_elements(tmp_path, records, tiny_config):
    train(records, tiny_config(steps=1), tmp_path, device='cpu')
    with pytest.raises(ValueError, match='architecture'):
        train(records, tiny_config(steps=2, critic_width=8), tmp_path / 'b', resume=tmp_path / 'model.pt')
    records[0].numbers[0] = 22
    with pytest.raises(ValueError, match='Ti not in the model vocabulary'):
        train(records, tiny_config(steps=2), tmp_path / 'c', resume=tmp_path / 'model.pt')


def test_physics_head_learns_energies_and_forces(records, tiny_config):
    config = tiny_config(cutoff=5.0, num_rbf=16, physics_width=32, batch_size=24, physics_lr=3e-3)
    elements = element_vocabulary(records)
    normalisation = fit_normalisation(records, elements, config.min_distance, config.cutoff, config.max_images)
    data = build_training_set(records, elements, config.n_max, normalisation)
    trainer = Trainer.from_config(config, normalisation, torch.device('cpu'))
    everything = torch.arange(len(data))
    before = float(trainer.physics_loss(data.select(everything), create_graph=False))
    for _ in range(60):
        trainer.physics_step(data, everything)
    after = float(trainer.physics_loss(data.select(everything), create_graph=False))
    assert after < 0.3 * before


def test_reference_energies_are_fitted(records):
    normalisation = fit_normalisation(records, ['O', 'Nb'], 1.0, 4.0, 4)
    assert normalisation.num_energies == len(records)
    counts = np.array([[np.sum(r.numbers == 8), np.sum(r.numbers == 41)] for r in records])
    energies = np.array([r.energy for r in records])
    normalised = normalisation.normalise_energy(energies, counts)
    assert abs(normalised.mean()) < 1e-8 and abs(normalised.std() - 1) < 1e-8
    np.testing.assert_allclose(normalisation.energy_per_atom(normalised, counts), energies / counts.sum(axis=1))
    assert 1.5 < normalisation.min_pair_distance[0][1] < 2.5


def test_contact_wall_comes_from_the_minima_and_ignores_one_odd_structure():
    rocksalt = [
        StructureRecord(
            numbers=np.array([41, 8]),
            positions=np.array([[0.0, 0.0, 0.0], [a / 2, 0.0, 0.0]]),
            cell=np.eye(3) * a,
            role=MINIMUM,
        )
        for a in np.linspace(4.0, 4.4, 9)
    ]
    squeezed = StructureRecord(
        numbers=np.array([41, 8]), positions=np.array([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]]), cell=np.eye(3) * 4.0
    )
    odd = [*rocksalt, dataclasses.replace(squeezed, role=MINIMUM)]
    assert shortest_distances(odd, ['O', 'Nb'], 1.0, 5.0, 2)[0][1] == pytest.approx(1.2)
    assert 2.0 < shortest_distances(odd, ['O', 'Nb'], 1.0, 5.0, 2, quantile=0.2)[0][1] < 2.05
    labelled_squeezed = [*rocksalt, squeezed]
    normalisation = fit_normalisation(labelled_squeezed, ['O', 'Nb'], 1.0, 5.0, 2)
    assert normalisation.min_pair_distance[0][1] == pytest.approx(2.0)
    assert normalisation.min_pair_distance[0][0] == pytest.approx(4.0)
    with pytest.raises(ValueError, match='contact_quantile'):
        GanConfig(contact_quantile=1.0)


def test_generate_exact_compositions(tiny_model):
    targets = [{'composition': 'NbO2', 'formula_units': 2}, ('NbO', 1)]
    candidates = generate(tiny_model, targets, num_per_target=5, seed=3)
    assert len(candidates) == 10
    assert sorted(candidates[0].numbers.tolist()) == [8, 8, 8, 8, 41, 41]
    assert sorted(candidates[-1].numbers.tolist()) == [8, 41]
    assert {c.label for c in candidates} == {'NbO2', 'NbO'} and {c.source for c in candidates} == {'generated'}
    for candidate in candidates:
        frac = np.linalg.solve(candidate.cell.T, candidate.positions.T).T
        assert frac.min() >= 0 and frac.max() < 1 and candidate.volume > 0
    again = generate(tiny_model, targets, num_per_target=5, seed=3)
    np.testing.assert_array_equal(again[4].positions, candidates[4].positions)


@pytest.mark.parametrize(
    ('targets', 'count', 'message'),
    [
        ([{'composition': 'TiO2'}], 1, 'Ti of `TiO2` not in the model vocabulary'),
        ([{'composition': 'NbO2', 'formula_units': 3}], 1, 'more than n_max=8'),
        ([{'composition': 'NbO2', 'formula_units': 0}], 1, 'positive integer'),
        ([{'composition': 'NbO2'}], 0, 'num_per_target'),
        ([], 1, 'no targets'),
    ],
)
def test_generate_rejects_bad_requests(tiny_model, targets, count, message):
    with pytest.raises(ValueError, match=message):
        generate(tiny_model, targets, num_per_target=count)


def sorted_distances(record) -> np.ndarray:
    """All interatomic distances (minimum image) of a structure, sorted: invariant to frame, origin and atom order."""
    from ase import Atoms

    atoms = Atoms(numbers=record.numbers, positions=record.positions, cell=record.cell, pbc=True)
    distances = atoms.get_all_distances(mic=True)
    return np.sort(distances[np.triu_indices(len(atoms), 1)])


def test_generated_structures_depend_on_the_noise(tmp_path, make_records, tiny_config):
    """A collapsed generator maps every noise sample of one target to (nearly) the same structure.

    After a short training, the sorted interatomic distances of 16 raw samples of the EMA generator for one target
    differ by about 0.24 Å on average between pairs of samples (a generator with learned fixed slot positions:
    0.07 Å); require 0.15 Å, and no two samples alike.
    """
    model = train(make_records(), tiny_config(steps=20), tmp_path, device='cpu').checkpoint_path
    state = load_checkpoint(model)
    generator = load_generator(state, torch.device('cpu'))
    assert state['elements'] == ['O', 'Nb']
    counts = torch.tensor([[4, 2]])  # Nb2O4
    species, mask = slot_species(counts, generator.n_max)
    size = 16
    noise = generator.sample_noise(size, torch.Generator().manual_seed(0))
    condition = conditions(counts, generator.n_max).expand(size, -1)
    with torch.inference_mode():
        cell, frac = generator(noise, condition, mask.sum(dim=1).expand(size))
    batch = CrystalBatch(cell, frac, species.expand(size, -1), mask.expand(size, -1))
    vectors = np.array([sorted_distances(record) for record in batch_to_records(batch, state['elements'], wrap=True)])
    differences = np.abs(vectors[:, None] - vectors[None]).mean(axis=-1)[np.triu_indices(size, 1)]
    assert differences.mean() > 0.15, differences.mean()
    assert differences.min() > 0.01, differences.min()


def test_training_without_minima_is_refused(tmp_path, records, tiny_config):
    """Data written before roles existed reads as ``labelled`` throughout: refused before anything is written."""
    for record in records:
        record.role = LABELLED
    with pytest.raises(NoMinimaError, match='role `minimum`') as refused:
        train(records, tiny_config(steps=1), tmp_path / 'out', device='cpu')
    assert isinstance(refused.value, ValueError)
    assert not (tmp_path / 'out' / 'model.pt').exists()


def test_critic_data_are_the_minima_and_the_head_learns_from_all_labelled(tmp_path, records, tiny_config):
    """Minima set the volume prior and the critic's pool; labelled records (here also 20 % larger) only the head's."""
    for record in records:
        if record.role == LABELLED:
            record.cell = record.cell * 1.2
            record.positions = record.positions * 1.2
    minima = [record for record in records if record.role == MINIMUM]
    elements = element_vocabulary(records)
    normalisation = fit_normalisation(records, elements, 1.0, 4.0, 4)
    expected = np.log([r.volume / r.num_atoms for r in minima])
    assert normalisation.volume_log_mean == pytest.approx(expected.mean())
    assert normalisation.num_energies == len(records)
    records.append(records[-1].__class__(numbers=[41], positions=[[0, 0, 0]], cell=np.eye(3) * 3, role=LABELLED))
    metrics = train(records, tiny_config(steps=1), tmp_path, device='cpu').metrics
    assert metrics['num_minima'] == len(minima) == 12
    assert metrics['num_labelled'] == 24 and metrics['num_used'] == 24 and metrics['num_skipped'] == 1


def test_energy_floors_are_per_composition():
    energy = np.array([1.0, -2.0, 0.5, np.nan, 3.0, np.nan])
    counts = np.array([[1, 1], [2, 2], [1, 2], [2, 4], [1, 3], [2, 1]])
    np.testing.assert_array_equal(energy_floors(energy, counts), [-2.0, -2.0, 0.5, 0.5, 3.0, -2.0])
    assert energy_floors(np.full(2, np.nan), counts[:2]).tolist() == [0.0, 0.0]


def head_view_of_generated(trainer: Trainer, data, pool: torch.Tensor) -> tuple[float, float]:
    """The physics head's mean energy above the floor (eV/atom) and mean |F| (eV/Å) of 64 structures of the current
    generator, from fixed noise and compositions."""
    from aiida_crystalgan.gan.physics import energy_and_forces

    model, normalisation = trainer.model, trainer.normalisation
    local = torch.Generator().manual_seed(123)
    real = data.select(pool[torch.randint(len(pool), (64,), generator=local)])
    with torch.no_grad():
        cell, frac = model.generator(model.generator.sample_noise(64, local), real.condition, real.batch.num_atoms)
    batch = CrystalBatch(cell, frac.requires_grad_(True), real.batch.species, real.batch.mask)
    energy, forces = energy_and_forces(model.physics, model.features(batch)[0], batch, create_graph=False)
    norms = (trainer.force_units * forces).norm(dim=-1) * normalisation.force_scale
    excess = float((energy.detach() - real.energy_floor).mean()) * normalisation.energy_scale
    return excess, float(norms[batch.mask].mean())


def test_guidance_pulls_generated_structures_to_low_energy_and_small_forces(make_records, tiny_config):
    """With the critic's score and the priors switched off, 30 generator updates driven by guidance alone lower the
    pre-trained head's energy above the floor and forces of the generated structures (fixed noise). Minima: the tiny
    cells without rattling; labelled: rattled ones.
    """
    minima = make_records(12, seed=1, rattle=0.0)
    labelled = make_records(24, seed=2, rattle=0.05)
    for record in minima:
        record.role = MINIMUM
    for record in labelled:
        record.role = LABELLED
    usable = training_records(minima + labelled)
    config = tiny_config(
        batch_size=8,
        physics_warmup_steps=0,
        physics_ramp_steps=0,
        energy_weight=1.0,
        force_weight=1.0,
        generator_lr=1e-2,
        diversity_weight=0.0,
        repulsion_weight=0.0,
        volume_weight=0.0,
        seed=3,
    )
    elements = element_vocabulary(usable)
    normalisation = fit_normalisation(usable, elements, config.min_distance, config.cutoff, config.max_images)
    data = build_training_set(usable, elements, config.n_max, normalisation)
    trainer = Trainer.from_config(config, normalisation, torch.device('cpu'))
    data.features = featurize(trainer, data)
    everything = torch.arange(len(data))
    pool = everything[data.minimum]
    assert len(pool) == 12
    for _ in range(150):
        trainer.physics_step(data, everything)
    readout = trainer.model.critic.head.readout
    torch.nn.init.zeros_(readout.weight)
    torch.nn.init.zeros_(readout.bias)
    start = head_view_of_generated(trainer, data, pool)
    for _ in range(30):
        trainer.generator_step(data, pool, physics_on=True)
        trainer.step += 1
    end = head_view_of_generated(trainer, data, pool)
    assert end[0] < start[0] - 0.1, (start, end)
    assert end[1] < 0.8 * start[1], (start, end)
