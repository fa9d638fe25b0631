"""Process-wide cache of token transliterations, exportable as a Polars frame.

Transliteration (pypinyin, pythainlp royin, the Burmese syllable romaniser) dominates the cost of
name normalisation, and the same tokens recur in every drop. transforms/names.py asks this module
for each distinct token once; the pipeline may persist the cache in the lake between runs with
:func:`export_cache` / :func:`import_cache` (columns ``script, token, latin``).

Drops of a run may be staged in threads of one process, so the cache is shared between threads:
its bookkeeping holds a lock, and the transliteration libraries are imported through
:func:`import_library`, one thread at a time.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from types import ModuleType

import polars as pl

CACHE_SCHEMA = {"script": pl.String(), "token": pl.String(), "latin": pl.String()}

# (script, token) -> latin. script is a namespace rather than only a writing system: the same
# hanzi read as a surname and as a given name are different entries ("Han:family", "Han:given").
_CACHE: dict[tuple[str, str], str] = {}  # also "zawgyi": value -> Unicode (scripts.py)
# Keys computed here since the last take_new() (not those imported): what a worker process
# hands back to the run that stores the cache.
_NEW: set[tuple[str, str]] = set()
_LOCK = threading.Lock()  # around changes to _CACHE and _NEW, and iteration over them
_IMPORTING = threading.Lock()


def import_library(module: str) -> ModuleType:
    """Import a transliteration library on first use, one thread at a time.

    pypinyin's modules import one another in a cycle (``pypinyin`` -> ``converter`` ->
    ``contrib.tone_sandhi`` -> ``contrib.tone_convert`` -> ``pypinyin``). Two threads importing
    two of them at once each hold a module lock the other waits for; Python breaks the deadlock
    by handing one a partially initialised module, and both fail (``_DeadlockError``,
    ``ImportError: cannot import name 'tone_to_tone2'``). Libraries are imported lazily because
    most commands never transliterate (pypinyin alone takes 0.3 s to import).
    """
    with _IMPORTING:
        return importlib.import_module(module)


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
        latins = fn(missing)  # outside the lock: threads transliterate at once
        with _LOCK:
            for token, latin in zip(missing, latins, strict=True):
                _CACHE[(script, token)] = latin
                _NEW.add((script, token))
    return {t: _CACHE[(script, t)] for t in wanted}


def export_cache() -> pl.DataFrame:
    """The cache as a frame ``script, token, latin``, sorted, for storing in the lake."""
    with _LOCK:
        return _frame(_CACHE)


def take_new() -> pl.DataFrame:
    """The entries computed since the last call (imported ones excluded), as in export_cache.

    Each new entry is returned by exactly one call, whichever thread makes it, so the drops of a
    run, in threads or worker processes, together hand back everything they transliterated.
    """
    global _NEW
    with _LOCK:
        taken, _NEW = _NEW, set()
        return _frame(taken)


def _frame(keys: Iterable[tuple[str, str]]) -> pl.DataFrame:
    """Cache entries as a frame ``script, token, latin``, sorted (the caller holds _LOCK)."""
    rows = [(script, token, _CACHE[(script, token)]) for script, token in keys]
    return pl.DataFrame(rows, schema=CACHE_SCHEMA, orient="row").sort("script", "token")


def import_cache(frame: pl.DataFrame) -> int:
    """Load entries from a frame made by :func:`export_cache`; returns how many were new.

    Raises:
        ValueError: when a column is missing.
    """
    missing = set(CACHE_SCHEMA) - set(frame.columns)
    if missing:
        raise ValueError(f"transliteration cache frame lacks columns {sorted(missing)}")
    rows = frame.select(list(CACHE_SCHEMA)).iter_rows()
    with _LOCK:
        before = len(_CACHE)
        for script, token, latin in rows:
            _CACHE.setdefault((script, token), latin)
        return len(_CACHE) - before


def clear_cache() -> None:
    """Forget every entry (tests and benchmarks use this to measure cold runs)."""
    with _LOCK:
        _CACHE.clear()
        _NEW.clear()


__all__ = [
    "clear_cache", "export_cache", "import_cache", "import_library", "take_new", "transliterate",
]
