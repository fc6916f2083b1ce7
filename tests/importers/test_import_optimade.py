"""OPTIMADE import against recorded provider responses served on 127.0.0.1 (no network access)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiida_crystalgan.importers.optimade import (
    OptimadeError,
    build_filter,
    import_optimade,
    iter_optimade_entries,
    structures_endpoint,
)

RESPONSES = Path(__file__).parent / 'responses'
RECORDED = ('structures_page1.json', 'structures_page2.json', 'error_bad_filter.json')  # what the provider serves


def base_url(server) -> str:
    return f'http://127.0.0.1:{server.server_port}'


def test_build_filter():
    assert build_filter(['Nb', 'O']) == 'elements HAS ONLY "Nb", "O"'
    assert build_filter(['Nb'], nelements=(2, 3), elements_only=False) == (
        'elements HAS ALL "Nb" AND nelements>=2 AND nelements<=3'
    )
    with pytest.raises(ValueError, match='invalid OPTIMADE filter'):
        build_filter(extra='elements HAS HAS')


@pytest.mark.parametrize(
    'url, expected',
    [
        ('https://optimade.example.org', 'https://optimade.example.org/v1/structures'),
        ('https://optimade.example.org/v1/', 'https://optimade.example.org/v1/structures'),
        ('https://example.org/optimade/v1.1', 'https://example.org/optimade/v1.1/structures'),
    ],
)
def test_structures_endpoint(url, expected):
    assert structures_endpoint(url) == expected


def test_paging(provider):
    """``links.next`` is followed until null; ``max_results`` stops early."""
    entries = list(iter_optimade_entries(base_url(provider), build_filter(['Nb', 'O']), page_limit=2))
    assert [entry['id'] for entry in entries] == ['oqmd-2921', 'oqmd-10057', 'oqmd-1239660', 'oqmd-99999']
    first, second = provider.requests
    assert first[1]['filter'] == ['elements HAS ONLY "Nb", "O"'] and first[1]['page_limit'] == ['2']
    assert second[1]['page_offset'] == ['2']
    assert len(list(iter_optimade_entries(base_url(provider), max_results=1))) == 1
    assert len(provider.requests) == 3


def test_import(provider):
    """The dataset records provider, filter and entry ids; the disordered entry is reported, not stored."""
    dataset = import_optimade(base_url(provider), elements=['Nb', 'O'], page_limit=2).store()
    assert dataset.size == 3
    assert dataset.compositions == {'NbO': 1, 'NbO2': 1, 'NbO3': 1}
    metadata = dataset.metadata
    assert metadata['base_url'] == base_url(provider)
    assert metadata['filter'] == 'elements HAS ONLY "Nb", "O"'
    assert metadata['entry_ids'] == ['oqmd-2921', 'oqmd-10057', 'oqmd-1239660', 'oqmd-99999']
    assert metadata['cleaning']['counts'] == {'disordered': 1}
    assert metadata['cleaning']['dropped'][0]['label'] == 'oqmd-99999'
    assert dataset[1].source == f'{base_url(provider)}/v1/structures/oqmd-10057'
    assert dataset.get_structure(1).get_space_group_info()[0] == 'P4_2/mnm'
    with dataset.open() as datafile:
        assert datafile.metadata['filter'] == metadata['filter']


def test_import_with_cleaning(provider):
    """Cleaning options apply to the imported records and add to the same report."""
    dataset = import_optimade(
        base_url(provider), elements=['Nb', 'O'], cleaning={'max_volume_per_atom': 14.0, 'min_distance': 1.5}
    )
    assert dataset.metadata['cleaning']['counts'] == {'disordered': 1, 'volume': 1}
    assert dataset.metadata['cleaning']['num_input'] == 4 and dataset.size == 2
    with pytest.raises(ValueError, match='cleaning dropped every structure: 0 of 4 structures kept'):
        import_optimade(base_url(provider), elements=['Nb', 'O'], cleaning={'max_volume_per_atom': 5.0})


def test_error_response(provider):
    """An OPTIMADE error body becomes an ``OptimadeError`` with the provider's message."""
    with pytest.raises(OptimadeError, match="HTTP 400: Bad Request: Unknown property: 'nonsense_property'"):
        import_optimade(base_url(provider), filter_='nonsense_property=1')
    with pytest.raises(OptimadeError, match='HTTP 404'):
        list(iter_optimade_entries(f'{base_url(provider)}/v2'))


def test_retry_on_unavailable(provider):
    """A 503 is retried."""
    provider.fail_next = 1
    assert len(list(iter_optimade_entries(base_url(provider), page_limit=2))) == 4


def test_unreachable():
    with pytest.raises(OptimadeError, match='cannot reach'):
        list(iter_optimade_entries('http://127.0.0.1:9', retries=0, timeout=2))


@pytest.mark.parametrize('name', RECORDED)
def test_recorded_responses_are_valid_json(name):
    """Every response the local provider serves is there and parses (a missing file fails, not passes)."""
    body = json.loads((RESPONSES / name).read_text())
    assert 'data' in body or 'errors' in body


def test_no_unused_recorded_response():
    assert sorted(path.name for path in RESPONSES.glob('*.json')) == sorted(RECORDED)


def scripted_pages(monkeypatch, pages):
    """Serve ``pages`` (OPTIMADE bodies) in turn instead of HTTP answers; return the list of URLs asked for."""
    from aiida_crystalgan.importers import optimade

    asked = []

    def get(session, url, params, timeout):
        asked.append(url)
        return pages[min(len(asked), len(pages)) - 1]

    monkeypatch.setattr(optimade, '_get', get)
    return asked


def test_empty_page_with_a_next_link_stops(monkeypatch):
    asked = scripted_pages(monkeypatch, [{'data': [], 'links': {'next': 'http://x/v1/structures?page_offset=1'}}])
    assert list(iter_optimade_entries('http://x')) == []
    assert len(asked) == 1


def test_next_link_loop_stops(monkeypatch):
    page = {'data': [{'id': 'a'}], 'links': {'next': 'http://x/v1/structures?page_offset=1'}}
    asked = scripted_pages(monkeypatch, [page])
    assert [entry['id'] for entry in iter_optimade_entries('http://x')] == ['a', 'a']
    assert len(asked) == 2, 'the same next link is not followed twice'


def test_page_count_is_bounded(monkeypatch):
    pages = [
        {'data': [{'id': str(i)}], 'links': {'next': f'http://x/v1/structures?page_offset={i + 1}'}} for i in range(10)
    ]
    scripted_pages(monkeypatch, pages)
    with pytest.raises(OptimadeError, match='still had a next page after 3 pages'):
        list(iter_optimade_entries('http://x', max_pages=3))


def test_retry_after_is_capped():
    from types import SimpleNamespace

    from aiida_crystalgan.importers.optimade import MAX_RETRY_WAIT, _CappedRetry

    retry = _CappedRetry(total=1)
    assert retry.get_retry_after(SimpleNamespace(headers={'Retry-After': '86400'})) == MAX_RETRY_WAIT
    assert retry.get_retry_after(SimpleNamespace(headers={'Retry-After': '2'})) == 2
