"""Small work side by side, big work alone: the visibility groups of a run.

A run resolves and publishes once per visibility group (fusionlake.pipeline.marts). When a
drop is small, each group's work is an incremental resolution or an in-place mart update: it
reads the rows the drop touches, holds little memory, and spends much of its time in one-core
stretches (Python between Polars and DuckDB calls, file copies). Two of them side by side keep
both cores busy. A full resolution or a mart built whole holds gigabytes: it runs alone, so the
run's peak memory stays that of one group, as it was when groups ran one after the other.

:class:`Slots` is that rule: small work holds one slot, big work holds them all, and
:func:`each` runs one call per group in as many threads as there are slots. Work that finds out
it is big (an incremental resolution that falls back to a full one) gives its slot back before
asking for all of them, so two groups never wait on each other.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Slots:
    """``size`` slots: :meth:`one` for small work, :meth:`every` for big work (alone)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"slots must be at least 1, not {size}")
        self.size = size
        self._free = size
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def _hold(self, n: int) -> Iterator[None]:
        with self._changed:  # all n at once: a waiter never sits on part of what it needs
            self._changed.wait_for(lambda: self._free >= n)
            self._free -= n
        try:
            yield
        finally:
            with self._changed:
                self._free += n
                self._changed.notify_all()

    def one(self) -> contextlib.AbstractContextManager[None]:
        """Hold one slot (small work, beside other small work)."""
        return self._hold(1)

    def every(self) -> contextlib.AbstractContextManager[None]:
        """Hold every slot (big work, alone)."""
        return self._hold(self.size)


#: For callers that run one group at a time (tests, single calls): nothing ever waits.
ALONE = Slots(1)


def each(items: Iterable[T], call: Callable[[T, Slots], R], slots: Slots) -> list[R]:
    """``call(item, slots)`` for every item, in up to ``slots.size`` threads; the results in
    the items' order. Every call runs to its end even when one fails; then the first failure
    (in the items' order) is raised, so what the others finished (a mart published) stands."""
    items = list(items)
    if slots.size == 1 or len(items) < 2:
        outcomes = []
        for item in items:
            try:
                outcomes.append((call(item, slots), None))
            except Exception as exc:  # raised below, once the others ran
                outcomes.append((None, exc))
    else:
        with ThreadPoolExecutor(min(slots.size, len(items)),
                                thread_name_prefix="fusionlake-group") as pool:
            futures = [pool.submit(call, item, slots) for item in items]
            outcomes = [(f.result(), None) if f.exception() is None else (None, f.exception())
                        for f in futures]
    for _result, exc in outcomes:
        if exc is not None:
            raise exc
    return [result for result, _exc in outcomes]
