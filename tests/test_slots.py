"""fusionlake.pipeline.slots: small work side by side, big work alone, every call run to its end.

The threads meet at barriers, so a test passes only if the calls really overlap (or really do
not); no test measures time.
"""

from __future__ import annotations

import threading

import pytest

from fusionlake.lake.settings import Settings, SettingsError
from fusionlake.pipeline.slots import Slots, each


class Overlap:
    """The most calls inside a section at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc) -> None:
        with self._lock:
            self.now -= 1


def test_small_work_runs_side_by_side():
    both_in = threading.Barrier(2, timeout=10)  # broken (an error) unless both hold a slot

    def small(item: str, slots: Slots) -> str:
        with slots.one():
            both_in.wait()
        return item.upper()

    assert each(["a", "b"], small, Slots(2)) == ["A", "B"]  # results in the items' order


def test_big_work_runs_alone_and_a_fallback_from_small_to_big_never_deadlocks():
    inside = Overlap()
    started = threading.Barrier(2, timeout=10)

    def falls_back(item: int, slots: Slots) -> int:
        with slots.one():  # both plan side by side, then both find they must run in full
            started.wait()
        with slots.every(), inside:
            pass
        return item

    assert each([1, 2], falls_back, Slots(2)) == [1, 2]
    assert inside.most == 1


def test_small_work_waits_while_big_work_holds_every_slot():
    slots = Slots(2)
    order: list[str] = []
    big_holds, small_asks, release = threading.Event(), threading.Event(), threading.Event()

    def big() -> None:
        with slots.every():
            order.append("big in")
            big_holds.set()
            release.wait(10)
            order.append("big out")

    def small() -> None:
        big_holds.wait(10)
        small_asks.set()
        with slots.one():
            order.append("small in")

    threads = [threading.Thread(target=big), threading.Thread(target=small)]
    for t in threads:
        t.start()
    # big is released only after small has asked for its slot and had time to get it: were
    # the slot not held back, "small in" would come before "big out"
    small_asks.wait(10)
    threading.Event().wait(0.3)
    release.set()
    for t in threads:
        t.join(10)
    assert order == ["big in", "big out", "small in"]


@pytest.mark.parametrize("size", [1, 2])
def test_a_failure_lets_the_other_calls_finish_then_is_raised(size):
    done: list[str] = []

    def call(item: str, slots: Slots) -> str:
        with slots.one():
            if item == "bad":
                raise RuntimeError("group bad failed")
            done.append(item)
        return item

    with pytest.raises(RuntimeError, match="group bad failed"):
        each(["bad", "good", "fine"], call, Slots(size))
    assert sorted(done) == ["fine", "good"]


def test_slots_and_the_setting_refuse_less_than_one(monkeypatch):
    with pytest.raises(ValueError, match="at least 1"):
        Slots(0)
    monkeypatch.setenv("FUSIONLAKE_GROUP_WORKERS", "0")
    with pytest.raises(SettingsError, match="FUSIONLAKE_GROUP_WORKERS"):
        Settings.from_env()
    monkeypatch.setenv("FUSIONLAKE_GROUP_WORKERS", "3")
    assert Settings.from_env().group_workers == 3
