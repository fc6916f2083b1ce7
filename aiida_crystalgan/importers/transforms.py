"""Calcfunctions deriving a new dataset from a stored one, so that every cleaning, augmentation and split is in the
provenance graph with its options (a stored dataset is immutable). Invalid parameters give exit status 300."""

from __future__ import annotations

from aiida import orm
from aiida.engine import ExitCode, calcfunction

from aiida_crystalgan.data.dataset import FILENAME, CrystalDatasetData

from .augment import AugmentOptions, augment_records
from .cleaning import CleaningOptions, CleaningReport, kept_records, select_clean

__all__ = ('augment_dataset', 'clean_dataset', 'split_dataset')

_SPLIT_PARAMETERS = {'fractions', 'seed', 'group_by', 'folds'}


def _invalid(reason: Exception | str) -> ExitCode:
    return ExitCode(300, f'invalid inputs: {reason}')


def _derived_metadata(dataset: CrystalDatasetData, key: str, value: dict) -> dict:
    return {**dataset.metadata, key: value, 'parent': dataset.uuid}


@calcfunction
def clean_dataset(dataset: CrystalDatasetData, parameters: orm.Dict | None = None) -> CrystalDatasetData:
    """Drop the structures of ``dataset`` that fail the ``CleaningOptions`` in ``parameters``; report why."""
    try:
        options = CleaningOptions.from_dict(parameters.get_dict() if parameters is not None else None)
        with dataset.open() as datafile:
            kept, report = select_clean(datafile, options)
            metadata = _derived_metadata(dataset, 'cleaning', report.as_dict(options))
            return CrystalDatasetData(kept_records(datafile, kept), metadata=metadata)
    except (TypeError, ValueError) as exception:
        return _invalid(exception)


@calcfunction
def augment_dataset(dataset: CrystalDatasetData, parameters: orm.Dict) -> CrystalDatasetData:
    """Augment ``dataset`` with the ``AugmentOptions`` in ``parameters`` (recorded in the output's metadata)."""
    report = CleaningReport()
    try:
        options = AugmentOptions.from_dict(parameters.get_dict())
        with dataset.open() as datafile:
            records = augment_records(datafile, options, report)
            augmentation = {'options': options.as_dict(), 'dropped': report.dropped}
            return CrystalDatasetData(records, metadata=_derived_metadata(dataset, 'augmentation', augmentation))
    except (TypeError, ValueError) as exception:
        return _invalid(exception)


@calcfunction
def split_dataset(dataset: CrystalDatasetData, parameters: orm.Dict) -> CrystalDatasetData:
    """A copy of ``dataset`` with seeded splits (``fractions``) and/or k-fold ``folds``, optionally ``group_by``."""
    options = parameters.get_dict()
    unknown = set(options) - _SPLIT_PARAMETERS
    if unknown:
        return _invalid(f'unknown split parameters {sorted(unknown)}: choose from {sorted(_SPLIT_PARAMETERS)}')
    if 'fractions' not in options and 'folds' not in options:
        return _invalid('give `fractions` (train, validation, test) and/or `folds` (k)')
    try:
        with dataset.base.repository.as_path(FILENAME) as path:
            return CrystalDatasetData(
                filepath=path,
                metadata={'parent': dataset.uuid},
                splits=options.get('fractions'),
                folds=options.get('folds'),
                seed=options.get('seed', 0),
                group_by=options.get('group_by'),
            )
    except (TypeError, ValueError) as exception:
        return _invalid(exception)
