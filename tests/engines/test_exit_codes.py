"""Exit codes are unique in meaning across the plugin; ``docs/exit_codes.md`` lists them as the specs define them."""

from __future__ import annotations

from pathlib import Path

from aiida.plugins.entry_point import load_entry_point

from aiida_crystalgan.exit_codes import EXIT_CODES, collect_exit_codes, render_table, upstream_exit_codes

TABLE = Path(__file__).parents[2] / 'docs' / 'exit_codes.md'
OWN_MODULES = ('aiida_crystalgan.calculations', 'aiida_crystalgan.engines')


def conflicts(codes: dict, inherited: set[tuple[int, str]], processes: tuple[str, ...] | None = None) -> dict:
    """Statuses with more than one label, unless every label is inherited (aiida-core's and aiida-vasp's own clashes).

    With ``processes``, only the statuses that one of these processes defines itself are checked.
    """
    found = {}
    for status, labels in codes.items():
        own = {label for label in labels if (status, label) not in inherited}
        if processes is not None:
            own = {label for label in own if any(p in processes for p in labels[label]['processes'])}
        if own and len(labels) > 1:
            found[status] = {label: entry['processes'] for label, entry in labels.items()}
    return found


def own_processes() -> tuple[str, ...]:
    """The ``crystalgan.*`` CalcJobs and engine workchains (whose codes ``exit_codes.py`` defines)."""
    codes = collect_exit_codes()
    names = {process for labels in codes.values() for entry in labels.values() for process in entry['processes']}
    return tuple(
        sorted(
            name
            for name in names
            if load_entry_point(f'aiida.{name.split(":")[0]}', name.split(':')[1]).__module__.startswith(OWN_MODULES)
        )
    )


def test_registry_codes_are_in_their_ranges_and_free_upstream():
    """Each code of ``exit_codes.py`` is in a range of ours; aiida-core/aiida-vasp use neither its number nor label."""
    inherited = upstream_exit_codes()
    for label, (status, _) in EXIT_CODES.items():
        assert 310 <= status < 400 or 500 <= status < 600, (label, status)
        assert not any(number == status for number, _ in inherited), f'{status} is taken upstream'
        assert not any(name == label for _, name in inherited), f'{label} is an upstream label'
    assert len({status for status, _ in EXIT_CODES.values()}) == len(EXIT_CODES)


def test_calcjob_and_engine_codes_have_one_meaning():
    """Every number that a CalcJob or engine workchain defines has one label across the whole plugin."""
    codes = collect_exit_codes()
    processes = own_processes()
    assert 'calculations:crystalgan.mlip' in processes and 'workflows:crystalgan.engine.vasp' in processes
    assert conflicts(codes, upstream_exit_codes(), processes) == {}
    for label, (status, _) in EXIT_CODES.items():
        assert label in codes[status], f'{label} ({status}) is defined by no process'


def test_every_code_has_one_meaning_across_the_plugin():
    """Every status number of every ``crystalgan.*`` process has one label (upstream clashes excepted)."""
    assert conflicts(collect_exit_codes(), upstream_exit_codes()) == {}


def test_documented_table_is_current():
    """``docs/exit_codes.md`` is what ``python -m aiida_crystalgan.exit_codes`` writes from the specs."""
    assert TABLE.read_text() == render_table(collect_exit_codes()), (
        'regenerate it: python -m aiida_crystalgan.exit_codes > docs/exit_codes.md'
    )
