"""Process-wide cache of token transliterations, exportable as a Polars frame.

Transliteration (pypinyin, pythainlp royin, the Burmese syllable romaniser) dominates the cost of
name normalisation, and the same tokens recur in every drop. transforms/names.py asks this module
for each distinct token once; the pipeline may persist the cache in the lake between runs with
:func:`export_cache` / :func:`import_cache` (columns ``script, token, latin``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import polars as pl

CACHE_SCHEMA = {"script": pl.String(), "token": pl.String(), "latin": pl.String()}

# (script, token) -> latin. script is a namespace rather than only a writing system: the same
# hanzi read as a surname and as a given name are different entries ("Han:family", "Han:given").
_CACHE: dict[tuple[str, str], str] = {}  # also "zawgyi": value -> Unicode (scripts.py)
# Keys computed here since the last take_new() (not those imported): what a worker process
# hands back to the run that stores the cache.
_NEW: set[tuple[str, str]] = set()


def transliterate(
    script: str, tokens: Iterable[str], fn: Callable[[list[str]], list[str]]
) -> dict[str, str]:
    """Transliterate distinct tokens, calling ``fn`` only for those not cached yet.

    Args:
        script: cache namespace, e.g. ``Thai`` or ``Han:family``.
        tokens: tokens (duplicates allowed; each is computed once).
        fn: maps a list of tokens to their Latin forms, in order.

    Returns:
        token -> Latin form for every distinct token given.
    """
    wanted = set(tokens)
    missing = [t for t in wanted if (script, t) not in _CACHE]
    if missing:
        for token, latin in zip(missing, fn(missing), strict=True):
            _CACHE[(script, token)] = latin
            _NEW.add((script, token))
    return {t: _CACHE[(script, t)] for t in wanted}


def export_cache() -> pl.DataFrame:
    """The cache as a frame ``script, token, latin``, sorted, for storing in the lake."""
    if not _CACHE:
        return pl.DataFrame(schema=CACHE_SCHEMA)
    scripts, tokens = zip(*_CACHE.keys(), strict=True)
    return pl.DataFrame(
        {"script": list(scripts), "token": list(tokens), "latin": list(_CACHE.values())},
        schema=CACHE_SCHEMA,
    ).sort("script", "token")


def take_new() -> pl.DataFrame:
    """The entries computed since the last call (imported ones excluded), as in export_cache.

    Each new entry is returned by exactly one call, whichever thread makes it, so the drops of a
    run, in threads or worker processes, together hand back everything they transliterated.
    """
    global _NEW
    taken, _NEW = _NEW, set()
    rows = [(script, token, _CACHE[(script, token)]) for script, token in taken]
    return pl.DataFrame(rows, schema=CACHE_SCHEMA, orient="row").sort("script", "token")


def import_cache(frame: pl.DataFrame) -> int:
    """Load entries from a frame made by :func:`export_cache`; returns how many were new.

    Raises:
        ValueError: when a column is missing.
    """
    missing = set(CACHE_SCHEMA) - set(frame.columns)
    if missing:
        raise ValueError(f"transliteration cache frame lacks columns {sorted(missing)}")
    before = len(_CACHE)
    for script, token, latin in frame.select(list(CACHE_SCHEMA)).iter_rows():
        _CACHE.setdefault((script, token), latin)
    return len(_CACHE) - before


def clear_cache() -> None:
    """Forget every entry (tests and benchmarks use this to measure cold runs)."""
    _CACHE.clear()
    _NEW.clear()


__all__ = ["clear_cache", "export_cache", "import_cache", "take_new", "transliterate"]
