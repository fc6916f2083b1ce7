"""Folds and the test split of a search: grouped by source, or the dataset's own split and folds."""

from __future__ import annotations

import pytest

from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.workflows.hpo import plan_folds


def test_folds_and_test_never_split_a_source(make_grouped_records):
    records = make_grouped_records(trajectories=6)
    dataset = CrystalDatasetData(records).store()
    plan = plan_folds(dataset, 3, 1 / 6, 'source', seed=1)
    parts = [plan['test'], *plan['folds']]
    assert sorted(i for part in parts for i in part) == list(range(len(records)))
    owners = {}
    for number, part in enumerate(parts):
        for index in part:
            assert owners.setdefault(records[index].source, number) == number
    assert len({records[i].source for i in plan['test']}) == 1
    assert plan == plan_folds(dataset, 3, 1 / 6, 'source', seed=1)
    with pytest.raises(ValueError, match='6 folds but only 5 groups'):
        plan_folds(dataset, 6, 1 / 6, 'source', seed=1)
    assert len(plan_folds(dataset, 6, 1 / 6, 'none', seed=1)['folds']) == 6


def test_the_datasets_own_split_and_folds_are_used(make_grouped_records):
    dataset = CrystalDatasetData(make_grouped_records(trajectories=6))
    dataset.set_splits((0.5, 0.0, 0.5), seed=0, group_by='source')
    dataset.set_folds(2, seed=0, group_by='source')
    dataset.store()
    plan = plan_folds(dataset, 2, 0.2, 'source', seed=5)
    test = dataset.get_split('test')
    assert plan['test'] == sorted(test)
    for number, fold in enumerate(plan['folds']):
        assert fold == [i for i in dataset.get_fold(number)[1] if i not in set(test)]
