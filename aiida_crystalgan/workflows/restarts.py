"""Restarts after a wall-clock stop that made progress do not use up ``max_iterations`` of a ``BaseRestartWorkChain``.

A long MD, relaxation or training split over many jobs by the scheduler's time limit is not failing: capping it by the
restart budget meant for errors (``max_iterations``) ends long runs for no reason, a long-standing complaint of
aiida-vasp and aiida-quantumespresso users. A handler that continues such a run calls :meth:`free_restart`, only when
the stopped job advanced (steps, structures), so that a job that stops without progress still counts and cannot loop.
"""

from __future__ import annotations

from aiida.engine import ExitCode


class WallclockRestartsMixin:
    """For subclasses of ``BaseRestartWorkChain``: :meth:`free_restart` leaves the current restart out of the cap.

    aiida-core checks ``ctx.iteration`` against ``max_iterations`` and reads the last process as
    ``ctx.children[ctx.iteration - 1]``, both in ``inspect_process``; during that step both are shown without the free
    restarts, so the cap counts only the others. Outside it ``ctx.iteration`` keeps counting every process.
    """

    def setup(self) -> None:
        super().setup()
        self.ctx.free_restarts = 0

    def free_restart(self, reason: str) -> None:
        """Leave the restart that the calling handler asks for out of ``max_iterations`` (call it from a handler)."""
        self.ctx.free_restarts += 1
        self.ctx.iteration -= 1
        self.report(f'{reason}: this restart does not count toward max_iterations')

    def inspect_process(self) -> ExitCode | None:
        free = self.ctx.free_restarts
        children = self.ctx.children
        self.ctx.iteration -= free
        self.ctx.children = children[free:]
        try:
            return super().inspect_process()
        finally:
            self.ctx.iteration += self.ctx.free_restarts
            self.ctx.children = children
