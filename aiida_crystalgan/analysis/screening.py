"""The slow end of the screening funnel: rank the fast filters' survivors on the engine's hull, then post-process them
best first until enough are selected, so that symmetry analysis and ``StructureMatcher`` run on a few candidates
rather than on all of them.

The fast filters and the physics head's predicted energies come from the generation executable
(:mod:`aiida_crystalgan.gan.screening`); the hull here is that of the reference phases computed with the engine whose
energies trained the physics head, so a predicted energy above the hull compares like with like.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Structure

from .matching import group_by_formula, make_matcher
from .postprocess import DropReason, PostprocessOptions, StructureReport, clean

__all__ = ('Selection', 'even_share_order', 'postprocess_in_order', 'predicted_energy_above_hull', 'select_ranked')


def predicted_energy_above_hull(
    diagram: PhaseDiagram, formulas: Sequence[str], energies_per_atom: Sequence[float]
) -> np.ndarray:
    """Energy above the hull (eV/atom) of each ``(formula, energy per atom)``, one hull evaluation per formula."""
    hull = {formula: diagram.get_hull_energy_per_atom(Composition(formula)) for formula in set(formulas)}
    return np.array([energy - hull[formula] for formula, energy in zip(formulas, energies_per_atom)], dtype=float)


@dataclass
class Selection:
    """The selected candidates (input index → processed structure), every examined candidate's report, counts."""

    structures: dict[int, Structure] = field(default_factory=dict)
    reports: list[StructureReport] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Examined candidates, and how many were selected or dropped for each reason (zeros included)."""
        counts = Counter(str(report.reason) if report.reason else 'selected' for report in self.reports)
        return {
            'examined': len(self.reports),
            'selected': counts['selected'],
            **{str(reason): counts[str(reason)] for reason in DropReason},
        }

    def to_dict(self) -> dict:
        """JSON summary: counts and the reports of the examined candidates."""
        reports = [
            {**asdict(report), 'reason': str(report.reason) if report.reason else None} for report in self.reports
        ]
        return {'counts': self.counts, 'selected': list(self.structures), 'reports': reports}


def even_share_order(formulas: Sequence[str], scores: Sequence[float]) -> list[int]:
    """Positions of the candidates, best (lowest ``score``) first within each composition, taken one composition at a
    time in turn (the composition with the best candidate first).

    Any first ``n`` of the order give every composition an even share. The physics head's energies of a composition
    with little or no training data carry an offset of tenths of an eV per atom (measured by the relaxation-steps
    ablation benchmark), which one ranking over all compositions would turn into that composition's share of the
    engine's budget.
    """
    queues: dict[str, list[int]] = {}
    for position in sorted(range(len(formulas)), key=lambda position: (scores[position], position)):
        queues.setdefault(formulas[position], []).append(position)
    longest = max((len(queue) for queue in queues.values()), default=0)
    return [queue[rank] for rank in range(longest) for queue in queues.values() if rank < len(queue)]


def postprocess_in_order(
    load: Callable[[int], Structure],
    order: Sequence[int],
    training: Sequence[Structure] = (),
    options: PostprocessOptions | None = None,
) -> Iterator[tuple[StructureReport, Structure | None]]:
    """Post-process candidates in ``order`` (best first; ``load(index)`` gives one), lazily: each examined
    candidate's report, with its processed structure when it is kept (``None`` when it is dropped).

    Each is cleaned and checked (:func:`.postprocess.clean`), then dropped when it matches a training structure or a
    candidate kept before it (``StructureMatcher``, same reduced formula only). The candidates kept are the greedy
    selection: the first ``n`` of them do not depend on how many are taken later.
    """
    options = options or PostprocessOptions()
    matcher = make_matcher(options.ltol, options.stol, options.match_angle_tol)
    training_by_formula = group_by_formula(training)
    kept_by_formula: dict[str, list[tuple[int, Structure]]] = {}
    for index in order:
        report = StructureReport(index=int(index))
        try:
            structure = clean(load(int(index)), options, report)
        except Exception as exception:  # noqa: BLE001 - one broken candidate must not stop the selection
            report.drop(DropReason.ERROR, f'{type(exception).__name__}: {exception}')
            yield report, None
            continue
        if structure is None:
            yield report, None
            continue
        formula = structure.composition.reduced_formula
        match = next((i for i in training_by_formula.get(formula, []) if matcher.fit(structure, training[i])), None)
        if match is not None:
            report.drop(DropReason.IN_TRAINING, f'matches training structure {match}', match)
            yield report, None
            continue
        if options.dedupe:
            kept = kept_by_formula.get(formula, [])
            match = next((earlier for earlier, other in kept if matcher.fit(structure, other)), None)
            if match is not None:
                report.drop(DropReason.DUPLICATE, f'same structure as candidate {match}', match)
                yield report, None
                continue
        report.kept = True
        kept_by_formula.setdefault(formula, []).append((int(index), structure))
        yield report, structure


def select_ranked(
    load: Callable[[int], Structure],
    order: Sequence[int],
    count: int,
    training: Sequence[Structure] = (),
    options: PostprocessOptions | None = None,
    max_examined: int | None = None,
) -> Selection:
    """Post-process candidates in ``order`` (:func:`postprocess_in_order`) until ``count`` are selected, or
    ``max_examined`` have been post-processed (a bound on the cost when most best-ranked candidates are dropped).
    """
    selection = Selection()
    if count <= 0 or max_examined == 0:
        return selection
    for report, structure in postprocess_in_order(load, order, training, options):
        selection.reports.append(report)
        if structure is not None:
            selection.structures[report.index] = structure
        if len(selection.structures) >= count or len(selection.reports) == max_examined:
            break
    return selection
