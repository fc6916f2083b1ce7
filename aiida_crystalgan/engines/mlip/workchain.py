"""``MlipEngineWorkChain``: the engine interface on ``crystalgan.mlip``, with per-structure fault isolation.

What a calculation leaves undone is resubmitted, never what it finished; the structures that fail on their own are
handled one by one:

=======================  ==============================================================================================
failure                  what the engine does
=======================  ==============================================================================================
soft wall-clock stop     keep the finished structures, resubmit the others; an MD that the limit cut continues
                         from its restart file (last step, velocities, thermostat, random generator); a stop that
                         advanced does not count toward ``max_iterations``
runner died (hard kill)  keep the finished structures; the one it was working on (``running.json``) fails with
                         ``ERROR_STRUCTURE_CRASHED``; resubmit the others
exploding relaxation     once every other structure is done, relax the exploded ones again with a fixed cell;
                         a second explosion fails them with ``ERROR_STRUCTURE_EXPLODED``
unknown element, NaN     fail that structure (``ERROR_STRUCTURE_UNSUPPORTED_ELEMENT``, ``ERROR_STRUCTURE_NON_FINITE``):
                         the model's answer would be the same on a rerun
=======================  ==============================================================================================

The engine's ``protocol`` (``mlip.yaml``) gives the calculations every parameter, setting and scheduler option that
the engine's inputs leave out. The batch succeeds when enough structures do (see ``EngineWorkChain.finish_batch``); a
restart budget that runs out (``max_iterations``) fails the structures still pending with ``ERROR_STRUCTURE_NOT_RUN``
instead of the batch.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_crystalgan.calculations.mlip import MlipCalculation
from aiida_crystalgan.engines.base import EngineWorkChain
from aiida_crystalgan.engines.outputs import failure, read_failures
from aiida_crystalgan.workflows.restarts import WallclockRestartsMixin

OUTPUT_NAMESPACES = ('trajectories', 'relaxed_structures', 'results')


def validate_protocol(protocol: orm.Str, _) -> str | None:
    """The protocol is one of ``mlip.yaml``."""
    available = MlipCalculation.get_available_protocols()
    if protocol.value not in available:
        return f'unknown protocol `{protocol.value}`: choose one of {", ".join(available)}'
    return None


class MlipEngineWorkChain(EngineWorkChain, WallclockRestartsMixin, BaseRestartWorkChain):
    """Run a batch through ``MlipCalculation``; resubmit only what is unfinished; fail structures, not batches."""

    _process_class = MlipCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['protocol'].validator = validate_protocol
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )

    def setup(self) -> None:
        """Prepare the inputs of the first calculation: the engine's inputs completed by its protocol."""
        super().setup()
        self.ctx.done = {namespace: {} for namespace in OUTPUT_NAMESPACES}
        self.ctx.failures = {}
        self.ctx.restarts = {}
        self.ctx.fixed_cell_retry = False
        values = MlipCalculation.get_protocol_values(
            self.inputs.operation.value,
            self.inputs.parameters.get_dict(),
            self.inputs.protocol.value,
            self.inputs.settings.get_dict() if 'settings' in self.inputs else None,
            self.inputs.options.get_dict() if 'options' in self.inputs else None,
        )
        self.ctx.inputs = AttributeDict(
            {
                'code': self.inputs.code,
                'operation': self.inputs.operation,
                'structures': dict(self.inputs.structures),
                'parameters': values['parameters'],
                'settings': values['settings'],
                'metadata': {'options': values['options']},
            }
        )

    def _collect(self, node) -> None:
        """Keep the outputs of ``node``'s finished structures, the failures it reports and its MD restart files."""
        for namespace in OUTPUT_NAMESPACES:
            if namespace in node.outputs:
                self.ctx.done[namespace].update(dict(node.outputs[namespace]))
        self.ctx.failures.update(read_failures(node))
        if 'restarts' in node.outputs:
            self.ctx.restarts.update({key: restart.uuid for key, restart in node.outputs.restarts.items()})

    def _finished(self) -> set[str]:
        return set(self.ctx.done['results']) | set(self.ctx.done['trajectories'])

    def _unfinished(self) -> dict:
        settled = self._finished() | set(self.ctx.failures)
        return {key: s for key, s in self.ctx.inputs.structures.items() if key not in settled}

    def _resubmit_unfinished(self, reason: str) -> ProcessHandlerReport:
        """Resubmit the structures that are neither finished nor failed; with no restart left, fail them."""
        remaining = self._unfinished()
        if not remaining:
            if not self._retry_exploded():
                self.report(f'{reason}, but every structure is settled')
                self.ctx.is_finished = True
        elif self.ctx.iteration >= self.inputs.max_iterations.value:
            self.report(f'{reason}: no restart left for the {len(remaining)} unfinished structures')
            for key in remaining:
                self.ctx.failures[key] = failure('ERROR_STRUCTURE_NOT_RUN', f'{reason} at the last allowed restart')
            self.ctx.is_finished = True
        else:
            self.report(
                f'{reason}: {len(self._finished())} structures done, {len(self.ctx.failures)} failed, '
                f'resubmitting the other {len(remaining)}'
            )
            self.ctx.inputs.structures = remaining
            restarts = {key: orm.load_node(uuid) for key, uuid in self.ctx.restarts.items() if key in remaining}
            self.ctx.inputs.pop('restarts', None)
            if restarts:
                self.ctx.inputs.restarts = restarts
                self.report(f'continuing the MD of {", ".join(sorted(restarts))} from the restart files')
        return ProcessHandlerReport(do_break=True)

    def _retry_exploded(self) -> bool:
        """Once, relax the structures whose relaxation exploded again with a fixed cell; ``False`` when there are none.

        Cell relaxations of unphysical candidates can run away (vacuum opening up, a collapse); the positions alone
        usually relax.
        """
        exploded = sorted(
            key for key, entry in self.ctx.failures.items() if entry['exit_label'] == 'ERROR_STRUCTURE_EXPLODED'
        )
        parameters = self.ctx.inputs.parameters
        if (
            self.ctx.fixed_cell_retry
            or not exploded
            or not parameters['relax_cell']
            or self.ctx.iteration >= self.inputs.max_iterations.value
        ):
            return False
        self.ctx.fixed_cell_retry = True
        for key in exploded:
            del self.ctx.failures[key]
        self.ctx.inputs.structures = {key: self.inputs.structures[key] for key in exploded}
        self.ctx.inputs.parameters = {**parameters, 'relax_cell': False}
        self.report(f'the relaxations of {", ".join(exploded)} exploded: relaxing them again with a fixed cell')
        return True

    @process_handler(priority=600, exit_codes=[MlipCalculation.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT])
    def handle_soft_walltime(self, node) -> ProcessHandlerReport:
        """Keep the finished structures and resubmit the rest; a cut MD continues from its restart file.

        The restart is free (not counted toward ``max_iterations``) when the stopped run settled a structure or cut an
        MD after at least one step (it then leaves a restart file).
        """
        before = len(self._finished()) + len(self.ctx.failures)
        self._collect(node)
        if len(self._finished()) + len(self.ctx.failures) > before or 'restarts' in node.outputs:
            self.free_restart('the run advanced before its soft wall-clock limit')
        return self._resubmit_unfinished('soft wall-clock limit')

    @process_handler(priority=500, exit_codes=[MlipCalculation.exit_codes.ERROR_EXECUTABLE_CRASHED])
    def handle_crash(self, node) -> ProcessHandlerReport | None:
        """A run that died (hard wall-clock kill, lost node, a structure that kills the model): keep what it finished,
        fail the structure it died on, resubmit the rest.

        A crash that neither finished nor named a structure is left to ``BaseRestartWorkChain``.
        """
        before = len(self._finished()) + len(self.ctx.failures)
        self._collect(node)
        if len(self._finished()) + len(self.ctx.failures) == before:
            return None
        return self._resubmit_unfinished(f'the runner crashed ({node.exit_message})')

    @process_handler(priority=400)
    def handle_exploded_relaxations(self, node) -> ProcessHandlerReport | None:
        """Once a batch is through, relax the structures that exploded again once, with a fixed cell."""
        if not node.is_finished_ok:
            return None
        self._collect(node)
        return ProcessHandlerReport(do_break=True) if self._retry_exploded() else None

    def results(self):
        """Attach the standard outputs gathered over every iteration and the failures; check the quorum."""
        self._collect(self.ctx.children[self.ctx.iteration - 1])
        missing = [key for key in self.inputs.structures if key not in self._finished() | set(self.ctx.failures)]
        if missing:
            return self.exit_codes.ERROR_MISSING_ENGINE_OUTPUT.format(keys=', '.join(missing))
        for namespace, outputs in self.ctx.done.items():
            for key, value in outputs.items():
                self.out(f'{namespace}.{key}', value)
        self.report(
            f'{self.inputs.operation.value} finished for {len(self._finished())} of '
            f'{len(self.inputs.structures)} structures'
        )
        return self.finish_batch(self.ctx.failures)
