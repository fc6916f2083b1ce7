"""Queries, tables, plots and exports of campaign results, for the CLI, the report and notebooks.

Everything returns plain objects (AiiDA nodes, pandas DataFrames, matplotlib Figures) and leaves printing and saving
to the caller::

    from aiida import load_profile
    from aiida_crystalgan import tools

    load_profile()
    campaign = tools.latest_campaign()
    tools.candidates_frame(campaign)
    tools.plot_convex_hull(campaign)
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
    training_calculation,
)
from .export import FORMATS, export_candidates
from .plots import (
    plot_convex_hull,
    plot_dataset,
    plot_e_above_hull,
    plot_losses,
    plot_phonons,
    plot_predicted_structures,
    plot_structure,
)

__all__ = (
    'CANDIDATE_COLUMNS', 'FORMATS', 'campaign_stage', 'candidate_rows', 'candidates_frame', 'describe',
    'export_candidates', 'latest_campaign', 'phase_diagram', 'phonon_calculation', 'plot_convex_hull', 'plot_dataset',
    'plot_e_above_hull', 'plot_losses', 'plot_phonons', 'plot_predicted_structures', 'plot_structure',
    'predicted_structures', 'provenance_path_to_md', 'training_calculation',
)
