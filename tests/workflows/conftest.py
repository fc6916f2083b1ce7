"""Fixtures of the workflow tests: the smallest campaign settings."""

from __future__ import annotations

import pytest

from aiida_crystalgan.workflows.protocols import recursive_merge

TINY = {
    'max_formula_units': 1,
    'seeds': {'max_atoms': 4},
    'sampling': {'temperatures': [800], 'steps': 20, 'timestep': 2.0, 'sample_interval': 5},
    'quench': {'max_snapshots': 1},
    'stability': {'relax': {'fmax': 0.1, 'max_steps': 60}, 'force_tolerance': 0.15,
                  'phonons': {'supercell_min_length': 4.0, 'mesh': [2, 2, 2], 'frequency_tolerance': 0.5}},
    'training': {'config': {'steps': 12, 'batch_size': 8, 'n_max': 8, 'generator_width': 32, 'critic_width': 16,
                            'physics_width': 16, 'log_every': 4, 'physics_warmup_steps': 4}},
    'generation': {'num_per_target': 8, 'max_validations': 2},
}


@pytest.fixture
def tiny_overrides():
    """Overrides that shrink the `fast` protocol until every stage takes seconds."""
    def factory(**overrides):
        return recursive_merge(TINY, overrides)

    return factory
