"""``aiida-crystalgan``: the command line of the plugin, built on ``aiida.cmdline``."""

from __future__ import annotations

import click
from aiida.cmdline.groups import VerdiCommandGroup
from aiida.cmdline.params import options, types

from .campaign import campaign
from .cost import cost
from .dataset import dataset
from .hpo import hpo
from .results import candidates, report, trace
from .setup import setup


@click.group('aiida-crystalgan', cls=VerdiCommandGroup, context_settings={'help_option_names': ['-h', '--help']})
@options.PROFILE(type=types.ProfileParamType(load_profile=True), expose_value=False)
@options.VERBOSITY()
def cmd_root() -> None:
    """Crystal structure prediction with GANs, validated by DFT or MLIPs, with full AiiDA provenance."""


for command in (setup, campaign, dataset, hpo, candidates, trace, report, cost):
    cmd_root.add_command(command)
