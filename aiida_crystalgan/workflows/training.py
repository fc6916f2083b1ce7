"""``crystalgan.training``: train the GAN, resuming from its checkpoint after every wall-clock stop."""

from __future__ import annotations

from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_crystalgan.calculations.train import TrainCalculation


class TrainingWorkChain(BaseRestartWorkChain):
    """Run ``crystalgan.train`` until the configured number of steps is reached, across wall-clock limits."""

    _process_class = TrainCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(TrainCalculation, namespace='train')
        spec.expose_outputs(TrainCalculation)
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )

    def setup(self) -> None:
        """Take the calculation inputs from the ``train`` namespace."""
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(TrainCalculation, 'train'))

    @process_handler(priority=500, exit_codes=[TrainCalculation.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT])
    def handle_soft_walltime(self, node) -> ProcessHandlerReport:
        """Resume from the checkpoint that the stopped run wrote: no training step is lost."""
        checkpoint = node.outputs.checkpoint
        self.ctx.inputs.parent_model = checkpoint
        self.report(f'{node.process_label}<{node.pk}> stopped at step {checkpoint.step}: resuming from its checkpoint')
        return ProcessHandlerReport(do_break=True)
