"""Great Expectations validation of agency drops: suites per feed, custom checks, Data Docs.

The public surface::

    validate_drop(frame, feed, drop_id) -> ValidationOutcome
    summarise(outcome) -> str
    build_data_docs(results, out_dir) -> Path
    suite_for_feed(feed) -> dict, load_suite(feed) -> dict

Suites are compiled from the feed files when loaded, plus an optional steward override beside
the feed file (expectations/suites.py); custom expectations live in expectations/custom.py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from expectations.docs import build_data_docs
    from expectations.runner import ValidationOutcome, summarise, validate_drop
    from expectations.suites import SuiteError, load_suite, suite_for_feed

# Loaded when first asked for: the runner loads GX (0.7 s), which a process that only rewrites
# the Data Docs index (expectations.docs) has no need of.
_WHERE = {"build_data_docs": "docs", "ValidationOutcome": "runner", "summarise": "runner",
          "validate_drop": "runner", "SuiteError": "suites", "load_suite": "suites",
          "suite_for_feed": "suites"}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
           "SuiteError",
           "ValidationOutcome",
           "build_data_docs",
           "load_suite",
           "suite_for_feed",
           "summarise",
           "validate_drop",
]
