"""``crystalgan.training``: train the GAN, resuming from its checkpoint after every wall-clock stop.

A stop (the soft wall-clock limit, or a kill by the scheduler after a periodic checkpoint) that advanced the training
does not count toward ``max_iterations``: a long training may span any number of jobs.

A run that diverges (NaN or infinite loss) is not restarted: the same data, configuration and checkpoint would diverge
again. The workchain stops with ``ERROR_TRAINING_DIVERGED`` and outputs the last good ``checkpoint``, to resume from
with another configuration (a smaller learning rate, say).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_crystalgan.calculations.train import TrainCalculation
from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.gan.config import GanConfig
from aiida_crystalgan.workflows.protocols import ProtocolMixin
from aiida_crystalgan.workflows.restarts import WallclockRestartsMixin


def progress_monitor(poll_interval: int) -> dict[str, Any]:
    """A ``monitors`` entry that reports the latest losses of a running training job every ``poll_interval`` s."""
    return {'entry_point': 'crystalgan.training_progress', 'minimum_poll_interval': int(poll_interval)}


class TrainingWorkChain(ProtocolMixin, WallclockRestartsMixin, BaseRestartWorkChain):
    """Run ``crystalgan.train`` until the configured number of steps is reached, across wall-clock limits."""

    _process_class = TrainCalculation
    _protocol_file = 'training.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(TrainCalculation, namespace='train')
        spec.expose_outputs(TrainCalculation)
        spec.exit_code(
            640,
            'ERROR_TRAINING_DIVERGED',
            message='Training diverged (NaN or infinite loss); the last good checkpoint, if any, is the '
            '`checkpoint` output: {message}',
        )
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )

    @classmethod
    def get_override_keys(cls) -> dict[str, Any]:
        """The protocol's keys; ``config`` takes any field of ``GanConfig``."""
        return {**super().get_override_keys(), 'config': {field.name for field in dataclasses.fields(GanConfig)}}

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        dataset: CrystalDatasetData | None = None,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ):
        """A builder that trains on ``dataset`` with the GAN ``config`` of ``protocol`` (``training.yaml``).

        :param options: scheduler options of the training job (e.g. ``custom_scheduler_commands`` for a GPU), over
            the protocol's ``max_wallclock_seconds``.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.train.code = code
        if dataset is not None:
            builder.train.dataset = dataset
        builder.train.parameters = orm.Dict(inputs['config'])
        for key, value in {'max_wallclock_seconds': inputs['max_wallclock_seconds'], **(options or {})}.items():
            builder.train.metadata.options[key] = value
        builder.max_iterations = orm.Int(inputs['max_iterations'])
        if inputs['progress_poll_interval']:
            builder.train.monitors = {'progress': orm.Dict(progress_monitor(inputs['progress_poll_interval']))}
        return builder

    def setup(self) -> None:
        """Take the calculation inputs from the ``train`` namespace."""
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(TrainCalculation, 'train'))

    def _resume_from(self, checkpoint, reason: str) -> ProcessHandlerReport:
        """Resume from ``checkpoint``; the restart is free when the stopped job advanced the training."""
        started_at = self.ctx.inputs.parent_model.step if 'parent_model' in self.ctx.inputs else 0
        self.ctx.inputs.parent_model = checkpoint
        self.report(f'{reason} at step {checkpoint.step}: resuming from its checkpoint')
        if checkpoint.step > started_at:
            self.free_restart(f'the job advanced the training from step {started_at}')
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=500, exit_codes=[TrainCalculation.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT])
    def handle_soft_walltime(self, node) -> ProcessHandlerReport:
        """Resume from the checkpoint that the stopped run wrote: no training step is lost."""
        return self._resume_from(node.outputs.checkpoint, f'{node.process_label}<{node.pk}> stopped')

    @process_handler(priority=550, exit_codes=[TrainCalculation.exit_codes.ERROR_EXECUTABLE_CRASHED])
    def handle_killed(self, node) -> ProcessHandlerReport | None:
        """Resume a killed run (scheduler limit, out of memory) from its last periodic checkpoint, losing at most one
        checkpoint interval; without a checkpoint, leave it to the restart of an unhandled failure."""
        if 'checkpoint' not in node.outputs:
            return None
        return self._resume_from(
            node.outputs.checkpoint, f'{node.process_label}<{node.pk}> was killed after its periodic checkpoint'
        )

    @process_handler(priority=600, exit_codes=[TrainCalculation.exit_codes.ERROR_TRAINING_DIVERGED])
    def handle_diverged(self, node) -> ProcessHandlerReport:
        """Stop: a rerun would diverge again. Keep the last good checkpoint as an output."""
        if 'checkpoint' in node.outputs:
            self.out('checkpoint', node.outputs.checkpoint)
        return ProcessHandlerReport(
            do_break=True, exit_code=self.exit_codes.ERROR_TRAINING_DIVERGED.format(message=node.exit_message)
        )
