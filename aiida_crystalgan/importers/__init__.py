"""Importers of structures into ``CrystalDatasetData``: OPTIMADE providers, files, AiiDA nodes; cleaning,
augmentation and splits."""

from .augment import AugmentOptions, augment_records
from .cleaning import CleaningOptions, CleaningReport, build_dataset, select_clean
from .files import FileImportError, import_files, iter_file_records
from .nodes import build_dataset_from_nodes, collect_group_nodes, import_group, records_from_nodes
from .optimade import OptimadeError, build_filter, import_optimade
from .transforms import augment_dataset, clean_dataset, split_dataset

__all__ = (
    'AugmentOptions',
    'CleaningOptions',
    'CleaningReport',
    'FileImportError',
    'OptimadeError',
    'augment_dataset',
    'augment_records',
    'build_dataset',
    'build_dataset_from_nodes',
    'build_filter',
    'clean_dataset',
    'collect_group_nodes',
    'import_files',
    'import_group',
    'import_optimade',
    'iter_file_records',
    'records_from_nodes',
    'select_clean',
    'split_dataset',
)
