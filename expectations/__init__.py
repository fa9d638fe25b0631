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

from expectations.docs import build_data_docs
from expectations.runner import ValidationOutcome, summarise, validate_drop
from expectations.suites import SuiteError, load_suite, suite_for_feed

__all__ = [
           "SuiteError",
           "ValidationOutcome",
           "build_data_docs",
           "load_suite",
           "suite_for_feed",
           "summarise",
           "validate_drop",
]
