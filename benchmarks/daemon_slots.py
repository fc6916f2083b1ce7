"""How many daemon-worker slots a finished campaign held at its peak: the processes alive at the same time.

Each process that a daemon worker runs as a task (the campaign and every descendant workchain and calculation; not
the calcfunctions, which run inside their caller) holds a slot of a worker from its creation to its termination.
Read from the profile afterwards: a process is counted alive from its node's ``ctime`` to its ``mtime`` (the last
change of a terminated process node is its termination, within the seconds that the engine takes to seal it), so the
peak is that of the overlapping intervals.

    python benchmarks/daemon_slots.py --aiida-path ./.aiida CAMPAIGN_PK [--output slots.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _profile import use_configuration_directory


def peak_alive(intervals: list[tuple[float, float]]) -> tuple[int, float]:
    """The largest number of overlapping ``(start, end)`` intervals and the first time it is reached."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    alive = peak = 0
    when = events[0][0] if events else 0.0
    for time, change in events:
        alive += change
        if alive > peak:
            peak, when = alive, time
    return peak, when


def campaign_slots(pk: int) -> dict:
    """Peak of the processes alive at once in campaign ``pk`` (calcfunctions left out), and which they were."""
    from aiida import orm

    campaign = orm.load_node(pk)
    if not isinstance(campaign, orm.WorkflowNode) or not campaign.is_terminated:
        raise SystemExit(f'node <{pk}> is not a terminated workflow')
    nodes = [campaign, *campaign.called_descendants]
    origin = campaign.ctime

    def interval(node) -> tuple[float, float]:
        return (node.ctime - origin).total_seconds(), (node.mtime - origin).total_seconds()

    tasks = [node for node in nodes if not isinstance(node, orm.CalcFunctionNode)]
    peak, when = peak_alive([interval(node) for node in tasks])
    alive_at_peak = sorted(node.process_label for node in tasks if interval(node)[0] <= when < interval(node)[1])
    return {
        'campaign': pk,
        'process_label': campaign.process_label,
        'processes': len(tasks),
        'peak_alive': peak,
        'peak_at_seconds': round(when, 1),
        'alive_at_peak': {label: alive_at_peak.count(label) for label in sorted(set(alive_at_peak))},
        'wall_seconds': round(interval(campaign)[1], 1),
    }


def main() -> int:
    """Load the profile of ``--aiida-path`` and report the campaign's peak slot use as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('campaign', type=int, help='pk of a terminated campaign')
    parser.add_argument('--aiida-path', type=Path, required=True, help='the AIIDA_PATH of the profile')
    parser.add_argument('--profile', help='profile name (default: the default profile there)')
    parser.add_argument('--output', type=Path, help='JSON file for the result')
    args = parser.parse_args()
    use_configuration_directory(args.aiida_path)
    from aiida import load_profile

    load_profile(args.profile, allow_switch=True)
    result = campaign_slots(args.campaign)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
