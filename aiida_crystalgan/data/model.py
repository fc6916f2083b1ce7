"""``GanModelData``: a trained GAN checkpoint with its configuration, normalisation and metrics."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from aiida import orm

from aiida_crystalgan.gan.checkpoint import read_checkpoint_summary


class GanModelData(orm.Data):
    """A checkpoint file of ``crystalgan-train`` in the node repository; its summary as queryable attributes.

    Attributes: ``elements``, ``n_max``, ``step``, ``hyperparameters`` (the training configuration), ``architecture``
    and ``metrics``. The checkpoint loads with ``torch.load(weights_only=True)``: it holds no pickled objects.
    """

    FILENAME = 'model.pt'

    def __init__(self, filepath: str | Path, metrics: dict[str, Any] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        filepath = Path(filepath)
        try:
            summary = read_checkpoint_summary(filepath)
        except Exception as exception:
            raise ValueError(f'`{filepath}` is not a readable crystalgan checkpoint: {exception}') from exception
        self.base.repository.put_object_from_file(str(filepath), self.FILENAME)
        self.base.attributes.set_many(
            {
                'elements': list(summary['elements']),
                'n_max': int(summary['n_max']),
                'step': int(summary['step']),
                'hyperparameters': summary['config'],
                'architecture': summary.get('architecture', {}),
                'metrics': {**summary.get('metrics', {}), **(metrics or {})},
            }
        )

    @property
    def elements(self) -> list[str]:
        return self.base.attributes.get('elements')

    @property
    def step(self) -> int:
        return self.base.attributes.get('step')

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.base.attributes.get('hyperparameters')

    @property
    def metrics(self) -> dict[str, Any]:
        return self.base.attributes.get('metrics')

    def write_file(self, path: str | Path) -> Path:
        """Copy the checkpoint to ``path`` and return it."""
        path = Path(path)
        with self.base.repository.open(self.FILENAME, 'rb') as source, path.open('wb') as target:
            shutil.copyfileobj(source, target)
        return path
