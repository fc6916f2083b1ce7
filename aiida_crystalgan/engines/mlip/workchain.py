"""``MlipEngineWorkChain``: the engine interface on ``crystalgan.mlip``, restarting what a wall-clock limit cut off."""

from __future__ import annotations

from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_crystalgan.calculations.mlip import MlipCalculation
from aiida_crystalgan.engines.base import EngineWorkChain

OUTPUT_NAMESPACES = ('trajectories', 'relaxed_structures', 'results')
DEFAULT_OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 3600}


class MlipEngineWorkChain(EngineWorkChain, BaseRestartWorkChain):
    """Run a batch through ``MlipCalculation``; after a wall-clock stop, resubmit only the unfinished structures."""

    _process_class = MlipCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )

    def setup(self) -> None:
        """Prepare the inputs of the first calculation."""
        super().setup()
        self.ctx.done = {namespace: {} for namespace in OUTPUT_NAMESPACES}
        options = dict(DEFAULT_OPTIONS)
        if 'options' in self.inputs:
            options.update(self.inputs.options.get_dict())
        self.ctx.inputs = AttributeDict({
            'code': self.inputs.code,
            'operation': self.inputs.operation,
            'structures': dict(self.inputs.structures),
            'parameters': self.inputs.parameters,
            'metadata': {'options': options},
        })
        if 'settings' in self.inputs:
            self.ctx.inputs.settings = self.inputs.settings

    def _collect(self, node) -> None:
        """Keep the outputs of ``node``'s finished structures."""
        for namespace in OUTPUT_NAMESPACES:
            if namespace in node.outputs:
                self.ctx.done[namespace].update(dict(node.outputs[namespace]))

    def _resubmit_unfinished(self, reason: str) -> None:
        finished = set(self.ctx.done['results']) | set(self.ctx.done['trajectories'])
        remaining = {key: s for key, s in self.ctx.inputs.structures.items() if key not in finished}
        if not remaining:
            self.report(f'{reason}, but every structure is done')
            self.ctx.is_finished = True
            return
        self.report(f'{reason}: {len(finished)} structures done, resubmitting the other {len(remaining)}')
        self.ctx.inputs.structures = remaining

    def _finished_count(self) -> int:
        return len(self.ctx.done['results']) + len(self.ctx.done['trajectories'])

    @process_handler(priority=500, exit_codes=[MlipCalculation.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT])
    def handle_soft_walltime(self, node) -> ProcessHandlerReport:
        """Keep the finished structures and resubmit the rest; MD restarts from the unfinished input structure."""
        self._collect(node)
        self._resubmit_unfinished('soft wall-clock limit')
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=400, exit_codes=[MlipCalculation.exit_codes.ERROR_EXECUTABLE_CRASHED])
    def handle_crash_after_progress(self, node) -> ProcessHandlerReport | None:
        """A run that died (hard wall-clock kill, lost node) after finishing structures: keep them, resubmit the rest.

        A crash that finished nothing is left to ``BaseRestartWorkChain``'s handling of unhandled failures.
        """
        before = self._finished_count()
        self._collect(node)
        if self._finished_count() == before:
            return None
        self._resubmit_unfinished(f'the runner crashed ({node.exit_message})')
        return ProcessHandlerReport(do_break=True)

    def results(self):
        """Attach the standard outputs gathered over every iteration."""
        self._collect(self.ctx.children[self.ctx.iteration - 1])
        missing = [key for key in self.inputs.structures if not any(key in self.ctx.done[ns] for ns in
                                                                     ('results', 'trajectories'))]
        if missing:
            return self.exit_codes.ERROR_MISSING_ENGINE_OUTPUT.format(keys=', '.join(missing))
        for namespace, outputs in self.ctx.done.items():
            for key, value in outputs.items():
                self.out(f'{namespace}.{key}', value)
        self.report(f'{self.inputs.operation.value} finished for {len(self.inputs.structures)} structures')
        return None


