"""Queries, tables, plots and exports of campaign results, for the CLI, the report and notebooks.

Everything returns plain objects (AiiDA nodes, pandas DataFrames, matplotlib Figures) and leaves printing and saving
to the caller::

    from aiida import load_profile
    from aiida_crystalgan import tools

    load_profile()
    campaign = tools.latest_campaign()
    tools.candidates_frame(campaign)
    tools.plot_convex_hull(campaign)
    tools.campaign_cost(campaign)  # the cost ledger: one row per calculation
"""

from .campaigns import (
    CANDIDATE_COLUMNS,
    campaign_stage,
    candidate_rows,
    candidates_frame,
    describe,
    latest_campaign,
    phase_diagram,
    phonon_calculation,
    predicted_structures,
    provenance_path_to_md,
    rejected_structures,
    round_rows,
    round_table,
    training_calculation,
)
from .cost import (
    COST_COLUMNS,
    ROUND_STAGES,
    STAGE_ORDER,
    CostRecord,
    calcjob_cost,
    campaign_cost,
    child_stage,
    cost_by_stage,
    cost_summary,
    planned_stages,
    stage_progress,
)
from .export import FORMATS, export_candidates
from .plots import (
    plot_convex_hull,
    plot_cost,
    plot_dataset,
    plot_e_above_hull,
    plot_losses,
    plot_phonons,
    plot_predicted_structures,
    plot_structure,
)

__all__ = (
    'CANDIDATE_COLUMNS',
    'COST_COLUMNS',
    'FORMATS',
    'ROUND_STAGES',
    'STAGE_ORDER',
    'CostRecord',
    'calcjob_cost',
    'campaign_cost',
    'child_stage',
    'campaign_stage',
    'candidate_rows',
    'candidates_frame',
    'cost_by_stage',
    'cost_summary',
    'describe',
    'export_candidates',
    'latest_campaign',
    'phase_diagram',
    'phonon_calculation',
    'plot_convex_hull',
    'plot_cost',
    'plot_dataset',
    'plot_e_above_hull',
    'plot_losses',
    'plot_phonons',
    'plot_predicted_structures',
    'plot_structure',
    'planned_stages',
    'predicted_structures',
    'rejected_structures',
    'provenance_path_to_md',
    'round_rows',
    'round_table',
    'stage_progress',
    'training_calculation',
)
