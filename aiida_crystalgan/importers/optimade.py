"""Import structures from any OPTIMADE provider.

HTTP goes through ``requests`` (a session with retries on 429/5xx) speaking the OPTIMADE JSON:API directly:
``GET {base_url}/v1/structures?filter=...&page_limit=...``, then ``links.next`` until it is null. Entries become
pymatgen structures through ``optimade``'s adapters (which validate them against the OPTIMADE models), and filters
are checked locally by ``optimade``'s grammar before anything is sent. ``optimade.client.OptimadeClient`` was not used:
it is an asynchronous multi-provider client that needs ``httpx``/``rich`` and reports per-provider failures in its
results instead of raising, where an import must stop with a clear error.

Database entries are known phases, relaxed by the database's own calculations: their role is ``minimum`` unless
told otherwise.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.io.datafile import MINIMUM, StructureRecord, check_role

from .cleaning import CleaningOptions, CleaningReport, build_dataset

__all__ = ('OptimadeError', 'build_filter', 'import_optimade', 'iter_optimade_entries', 'structures_endpoint')

RESPONSE_FIELDS = (
    'lattice_vectors',
    'cartesian_site_positions',
    'species_at_sites',
    'species',
    'dimension_types',
    'nperiodic_dimensions',
    'chemical_formula_reduced',
    'last_modified',
    'structure_features',
)


class OptimadeError(RuntimeError):
    """The provider answered with an error or an invalid response."""


def build_filter(
    elements: Sequence[str] | None = None,
    nelements: int | tuple[int, int] | None = None,
    elements_only: bool = True,
    extra: str | None = None,
) -> str:
    """An OPTIMADE filter string on ``elements`` and ``nelements``.

    :param elements: structures must contain all of these; with ``elements_only`` only these (a chemical system).
    :param nelements: exact number of elements, or an inclusive ``(min, max)`` range.
    :param extra: any further OPTIMADE filter, joined with ``AND``.
    """
    clauses = []
    if elements:
        quoted = ', '.join(f'"{element}"' for element in elements)
        clauses.append(f'elements HAS {"ONLY" if elements_only else "ALL"} {quoted}')
    if isinstance(nelements, int):
        clauses.append(f'nelements={nelements}')
    elif nelements is not None:
        clauses.append(f'nelements>={nelements[0]} AND nelements<={nelements[1]}')
    if extra:
        clauses.append(f'({extra})')
    filter_ = ' AND '.join(clauses)
    validate_filter(filter_)
    return filter_


@functools.lru_cache(maxsize=1)
def _filter_parser():
    from optimade.filterparser import LarkParser

    return LarkParser(version=(1, 0, 0))


def validate_filter(filter_: str) -> None:
    """Raise ``ValueError`` when ``filter_`` is not valid OPTIMADE filter grammar."""
    if not filter_:
        return
    from optimade.server.exceptions import BadRequest

    try:
        _filter_parser().parse(filter_)
    except BadRequest as exception:
        raise ValueError(f'invalid OPTIMADE filter `{filter_}`: {exception.detail}') from exception


def structures_endpoint(base_url: str) -> str:
    """The structures endpoint of a provider: ``/v1`` is appended unless ``base_url`` is already versioned."""
    base_url = base_url.rstrip('/')
    if base_url.endswith('/structures'):
        return base_url
    if not re.search(r'/v\d+(\.\d+){0,2}$', base_url):
        base_url += '/v1'
    return f'{base_url}/structures'


#: Longest wait (s) for a server's ``Retry-After`` or the retry back-off; a larger one is cut to this.
MAX_RETRY_WAIT = 60.0
#: Most pages followed for one query (``links.next``), whatever the server says.
MAX_PAGES = 10_000


class _CappedRetry(Retry):
    """urllib3's ``Retry`` that honours ``Retry-After`` for at most :data:`MAX_RETRY_WAIT` seconds."""

    DEFAULT_BACKOFF_MAX = MAX_RETRY_WAIT

    def get_retry_after(self, response) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, MAX_RETRY_WAIT)


def _session(retries: int) -> requests.Session:
    session = requests.Session()
    retry = _CappedRetry(
        total=retries,
        backoff_factor=1.0,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=('GET',),
        raise_on_status=False,
    )
    session.mount('http://', HTTPAdapter(max_retries=retry))
    session.mount('https://', HTTPAdapter(max_retries=retry))
    session.headers['Accept'] = 'application/vnd.api+json, application/json'
    return session


def _get(session: requests.Session, url: str, params: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    try:
        response = session.get(url, params=params, timeout=timeout)
    except requests.RequestException as exception:
        raise OptimadeError(f'cannot reach {url}: {exception}') from exception
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not response.ok or 'errors' in body and 'data' not in body:
        details = (
            '; '.join(
                f'{error.get("title", "")}: {error.get("detail", "")}'.strip(': ') for error in body.get('errors', [])
            )
            or response.text[:300]
        )
        raise OptimadeError(f'{response.url} answered HTTP {response.status_code}: {details}')
    if not isinstance(body.get('data'), list):
        raise OptimadeError(f'{response.url} did not answer an OPTIMADE list of entries (no `data` list)')
    return body


def iter_optimade_entries(
    base_url: str,
    filter_: str = '',
    page_limit: int = 100,
    max_results: int | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    max_pages: int = MAX_PAGES,
) -> Iterator[dict[str, Any]]:
    """Yield the raw structure entries matching ``filter_``, following ``links.next`` page by page.

    Stops at an empty page (even with a ``next`` link), at a ``next`` link already followed, and after ``max_pages``
    pages (:class:`OptimadeError`), so that a misbehaving server cannot keep the import running for ever.
    """
    validate_filter(filter_)
    url: str | None = structures_endpoint(base_url)
    params: dict[str, Any] | None = {'page_limit': page_limit, 'response_fields': ','.join(RESPONSE_FIELDS)}
    if filter_:
        params['filter'] = filter_
    count = 0
    followed: set[str] = set()
    with _session(retries) as session:
        for _ in range(max_pages):
            body = _get(session, url, params, timeout)
            if not body['data']:
                return
            for entry in body['data']:
                yield entry
                count += 1
                if max_results is not None and count >= max_results:
                    return
            next_link = (body.get('links') or {}).get('next')
            url = next_link.get('href') if isinstance(next_link, dict) else next_link
            if not url or url in followed:
                return
            followed.add(url)
            params = None
    raise OptimadeError(
        f'{base_url} still had a next page after {max_pages} pages: narrow the filter or set `max_results`'
    )


def entry_to_record(entry: dict[str, Any], source: str, role: str = MINIMUM) -> StructureRecord:
    """Convert one OPTIMADE structure entry into a record through ``optimade``'s pymatgen adapter.

    Only ``id``, ``type`` and ``attributes`` are validated: a provider's odd ``links`` must not cost a structure.
    """
    from optimade.adapters import Structure

    entry = {key: entry[key] for key in ('id', 'type', 'attributes') if key in entry}
    structure = Structure(entry).convert('pymatgen')
    if not hasattr(structure, 'lattice'):
        raise ValueError('not periodic in three dimensions')
    return StructureRecord.from_pymatgen(
        structure,
        source=source,
        label=entry['attributes'].get('chemical_formula_reduced', structure.composition.reduced_formula),
        role=role,
    )


def import_optimade(
    base_url: str,
    filter_: str | None = None,
    elements: Sequence[str] | None = None,
    nelements: int | tuple[int, int] | None = None,
    page_limit: int = 100,
    max_results: int | None = None,
    cleaning: CleaningOptions | dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    role: str = MINIMUM,
    **kwargs,
) -> CrystalDatasetData:
    """Query an OPTIMADE provider and return an unstored ``CrystalDatasetData`` of the structures found.

    Give a full ``filter_`` or ``elements``/``nelements`` (see :func:`build_filter`). Each record's source is
    ``<structures endpoint>/<entry id>``; entries that cannot be converted (disordered, invalid) are reported in
    ``metadata['cleaning']``. Every structure gets ``role`` (default ``minimum``: database entries are known phases).
    ``kwargs`` go to ``CrystalDatasetData`` (``splits``, ``folds``, ...).
    """
    check_role(role)
    if filter_ is None:
        filter_ = build_filter(elements, nelements)
    endpoint = structures_endpoint(base_url)
    report = CleaningReport()
    entry_ids: list[str] = []

    def records() -> Iterator[StructureRecord]:
        for entry in iter_optimade_entries(base_url, filter_, page_limit, max_results, timeout, retries):
            entry_id = str(entry.get('id'))
            entry_ids.append(entry_id)
            source = f'{endpoint}/{entry_id}'
            attributes = entry.get('attributes', {})
            if 'disorder' in (attributes.get('structure_features') or []):
                report.num_input += 1
                report.drop('disordered', 'OPTIMADE structure_features has `disorder`', source=source, label=entry_id)
                continue
            try:
                yield entry_to_record(entry, source, role)
            except Exception as exception:  # noqa: BLE001 - any invalid entry is reported, not fatal
                report.num_input += 1
                reason = 'disordered' if 'disordered' in str(exception) else 'unreadable'
                report.drop(
                    reason, f'{type(exception).__name__}: {str(exception)[:200]}', source=source, label=entry_id
                )

    options = CleaningOptions.from_dict(cleaning) if isinstance(cleaning, dict) else cleaning
    # ``entry_ids`` fills while the records stream, before ``build_dataset`` creates the node with this metadata.
    metadata = {
        'provider': 'optimade',
        'base_url': base_url,
        'endpoint': endpoint,
        'filter': filter_,
        'options': {'page_limit': page_limit, 'max_results': max_results, 'role': role},
        'entry_ids': entry_ids,
        **(metadata or {}),
    }
    return build_dataset(records(), metadata, options, report, **kwargs)
