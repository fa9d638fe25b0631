"""Generated agency drops, read and mapped as the pipeline does, then resolved.

500 generated people give about 870 person records in three scripts and calendars: below
min_records_to_train, so the declared priors score them (about 10 seconds in all).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest

from fusionlake.synth import generate
from transforms.evaluate import evaluate
from transforms.resolution.resolve import input_columns, resolve

_SPEC = importlib.util.spec_from_file_location(
    "bench_generated", Path(__file__).resolve().parents[2] / "bench" / "generated.py")
generated = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(generated)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    generate(500, 3, out)
    tables, truth, _raw = generated.load_generated(out)
    return tables, truth, resolve(tables)


def test_generated_people_are_resolved_across_agencies(resolved):
    tables, truth, result = resolved
    m = evaluate(result.entity_record, truth, tables["person_record"])
    assert m["precision"] >= 0.99, m
    assert m["f1"] >= 0.97, m
    # Entities span agencies: the point of fusion.
    agencies = (result.entity_record.join(tables["person_record"].select("record_id", "agency"),
                                          on="record_id")
                .group_by("entity_id").agg(pl.col("agency").n_unique()))
    assert agencies.filter(pl.col("agency") > 1).height > 50


def test_no_entity_holds_two_valid_national_ids(resolved):
    tables, _truth, result = resolved
    ids = tables["identifier"].filter(
        pl.col("check_valid").fill_null(False)
        & pl.col("kind").is_in(["cn_resident_id", "th_national_id", "mm_nrc"]))
    per_entity = (ids.join(result.entity_record, on="record_id")
                  .group_by("entity_id", "kind", "issuing_country")
                  .agg(pl.col("value_normalised").n_unique().alias("n")))
    assert per_entity.height > 100
    assert per_entity["n"].max() == 1


def test_the_declared_input_columns_are_all_resolve_reads(resolved, tmp_path):
    """The pipeline passes scans of the staged files narrowed to input_columns(), which resolve
    reads step by step: the same resolution as from the whole frames."""
    tables, _truth, result = resolved
    columns = input_columns()
    assert set(columns) == set(tables)
    scans = {}
    for t, f in tables.items():
        f.write_parquet(tmp_path / f"{t}.parquet")
        scans[t] = pl.scan_parquet(tmp_path / f"{t}.parquet").select(columns[t])
    narrow = resolve(scans)
    for name in ("entity_record", "record_link", "entity_link", "review_pair", "record_fact"):
        assert getattr(narrow, name).equals(getattr(result, name)), name
    assert narrow.stats["counts"]["records"] == tables["person_record"].height
    # and it is narrower: the columns left out are most of the detail tables
    assert sum(len(c) for c in columns.values()) < sum(f.width for f in tables.values()) / 2


def test_each_record_s_facts_are_kept_once_not_in_every_link(resolved):
    """The values compared are a record's, the same in each of its links: the resolution keeps
    them once per record (record_fact), and a link's evidence holds only what is its own."""
    tables, _truth, result = resolved
    links, fact = result.record_link, result.record_fact
    assert links.height > 300
    assert links.equals(links.sort("record_id_l", "record_id_r"))
    person = tables["person_record"]
    assert fact["record_id"].to_list() == sorted(person["record_id"].to_list())
    ends = pl.concat([links["record_id_l"], links["record_id_r"]]).unique()
    assert ends.is_in(fact["record_id"].implode()).all()
    evidence = [json.loads(e) for e in links["evidence"]]
    assert all(set(e) == {"identifiers", "weights"} for e in evidence)
    assert any(e["identifiers"] for e in evidence) and any(e["weights"] for e in evidence)
    # the facts are the record's own: provenance from its staged row
    row = person.sort("record_id").row(0, named=True)
    first = fact.row(0, named=True)
    assert (first["agency"], first["drop_id"], first["source_row"]) == (
        row["agency"], row["drop_id"], row["source_row"])


def test_splink_tables_are_removed_when_scoring_ends(resolved, tmp_path, monkeypatch):
    """Splink materialises its tables as Parquet files; a served process scores run after run,
    so only the low-scored pairs (read later, removed by ``close``) may outlive scoring, and
    nothing outlives ``close``: no file, no folder (they used to wait for the process's end)."""
    import atexit
    import tempfile

    from transforms.resolution import splink
    from transforms.resolution.settings import ResolveSettings
    from transforms.resolution.splink import match_frame, score_pairs

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # where DuckDB's spill folders go
    tables, _truth, _result = resolved
    handlers = atexit._ncallbacks()
    scored = score_pairs(match_frame(tables, ResolveSettings()), ResolveSettings(), {})
    try:
        assert scored.pairs.height > 0
        assert scored.low_pairs is not None and scored.low_pairs.exists()
        assert [p.name for p in scored.low_pairs.parent.iterdir()] == [scored.low_pairs.name]
        assert scored.against(pl.DataFrame({"record_id": ["x"], "component": ["x"]})).height == 0
        assert [p.name for p in tmp.iterdir()] == [scored.low_pairs.parent.name]
    finally:
        scored.close()
    assert list(tmp.iterdir()) == []
    # and nothing waits for the process's end: no exit handler more, no folder still listed
    assert atexit._ncallbacks() == handlers
    assert not any(folder.startswith(str(tmp)) for folder in splink._SPILLS)
