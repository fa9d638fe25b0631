"""The pipeline's steps without Prefect: how drops are spread over workers, and the
transliteration cache the workers hand back."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from fusionlake.lake import layout, zones
from fusionlake.lake.ledger import DropEntry
from fusionlake.pipeline import stage as processing
from transforms import translit_cache


def _entry(drop_id: str, size: int, ext: str = "csv") -> DropEntry:
    return DropEntry(drop_id, "cn_mps", "suspects", f"{drop_id}.{ext}", drop_id, size, "received",
                     None, "2026-12-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00", None, None)


MIB = 2**20


@pytest.mark.parametrize(
    ("sizes", "workers", "expected"),
    [
        ([40 * MIB, 30 * MIB, 1 * MIB], 2, 2),  # big drops: a process per core
        ([40 * MIB, 30 * MIB, 1 * MIB], 8, 3),  # never more workers than drops
        ([5 * MIB, 5 * MIB], 2, 0),  # small drops: threads, a process start would cost more
        ([100 * MIB], 2, 0),  # one drop: nothing to spread
        ([40 * MIB, 30 * MIB], 1, 0),  # one core
    ],
)
def test_drop_workers(sizes, workers, expected):
    entries = [_entry(f"d{i}", size) for i, size in enumerate(sizes)]
    assert processing.drop_workers(entries, workers, 32 * MIB) == expected


def test_largest_drop_starts_first():
    entries = [_entry("a", 10), _entry("b", 300), _entry("c", 20), _entry("d", 300)]
    assert [e.drop_id for e in processing.most_work_first(entries)] == ["b", "d", "c", "a"]


def test_the_drop_with_the_most_work_starts_first_whatever_its_format():
    # the 1M-people drops: by bytes the workbook started fourth, and ran on after the others
    entries = [_entry("detainees", 122 * MIB, "jsonl"), _entry("fraud", 60 * MIB),
               _entry("suspects", 30 * MIB), _entry("detentions", 27 * MIB, "xlsx"),
               _entry("repatriations", 24 * MIB), _entry("odd", 25 * MIB, "dat")]
    assert [e.drop_id for e in processing.most_work_first(entries)] == [
        "detentions", "detainees", "fraud", "suspects", "odd", "repatriations"]


def test_new_transliterations_are_taken_once():
    translit_cache.clear_cache()
    translit_cache.import_cache(pl.DataFrame({"script": ["Thai"], "token": ["ก"], "latin": ["K"]}))
    translit_cache.transliterate("Han:given", ["伟", "伟", "芳"], lambda ts: [t + "!" for t in ts])
    translit_cache.transliterate("Thai", ["ก"], lambda ts: 1 / 0)  # cached: fn not called
    new = translit_cache.take_new()
    assert new.rows() == [("Han:given", "伟", "伟!"), ("Han:given", "芳", "芳!")]
    assert translit_cache.take_new().height == 0  # imported entries are never "new"
    translit_cache.clear_cache()


def test_save_translit_cache_merges_the_lake_and_the_workers(store):
    translit_cache.clear_cache()
    row = {"script": ["Thai"], "token": ["ก"], "latin": ["K"]}
    store.put(layout.TRANSLIT_CACHE, zones.to_parquet(pl.DataFrame(row)))  # an earlier run's
    worker_a = pl.DataFrame({"script": ["Han:given", "Thai"], "token": ["伟", "ก"],
                             "latin": ["WEI", "K"]})
    worker_b = pl.DataFrame({"script": ["Han:family"], "token": ["张"], "latin": ["ZHANG"]})
    assert processing.save_translit_cache(store, [worker_a, None, worker_b]) == 3
    stored = pl.read_parquet(store.get(layout.TRANSLIT_CACHE))
    assert stored.rows() == [("Han:family", "张", "ZHANG"), ("Han:given", "伟", "WEI"),
                             ("Thai", "ก", "K")]


def test_stage_drop_hands_back_what_it_transliterated(store, tmp_path):
    from fusionlake.lake.ledger import Ledger
    from fusionlake.pipeline.land import deliver, discover, land
    from fusionlake.synth import generate

    translit_cache.clear_cache()
    generate(60, 3, tmp_path / "drops")
    deliver(store, "cn_mps", "suspects", sorted((tmp_path / "drops/cn_mps/suspects").iterdir()))
    ledger = Ledger(store)
    for info in discover(store, ledger):
        land(store, ledger, info, "run")
    (entry,) = processing.pending_drops(ledger)
    processing._seeded.discard(store.uri)
    result = processing.stage_drop(store.uri, [], entry, "run")
    assert result.state == "staged"
    scripts = set(result.transliterations["script"])
    assert {"Han:family", "Han:given"} <= scripts  # the suspects are written in hanzi
    # a second drop of the same names in this process transliterates nothing again
    again = processing.stage_drop(store.uri, [], dataclasses.replace(entry, state="validated"),
                                  "run")
    assert again.transliterations.height == 0
    translit_cache.clear_cache()
