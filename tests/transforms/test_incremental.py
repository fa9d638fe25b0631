"""Incremental resolution against a full one (transforms/resolution/incremental.py).

Generated agency drops (2,000 people, about 3,400 records: enough to train the model) are
resolved without a few records, then the few are added incrementally. With the model frozen
from the first training, the increment must give exactly what a full resolution of every record
gives: the same entities with the same ids, links, review pairs, entity links and history.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from test_resolve import CN_X, ident, person
from test_resolve import tables as make_tables

from fusionlake.synth import generate
from transforms.resolution import incremental
from transforms.resolution.resolve import conform_match, input_columns, resolve
from transforms.resolution.settings import ResolveSettings
from transforms.resolution.splink import KeptScorer, match_frame

_SPEC = importlib.util.spec_from_file_location(
    "bench_generated", Path(__file__).resolve().parents[2] / "bench" / "generated.py")
generated = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(generated)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LATER = datetime(2026, 12, 2, tzinfo=UTC)


def _without(tables: dict[str, pl.DataFrame], ids: pl.Series) -> dict[str, pl.DataFrame]:
    return {t: f.filter(~pl.col("record_id").is_in(ids.implode())) for t, f in tables.items()}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Every generated record, the new ones (every 20th of one feed), and the first full
    resolution of the others with its kept state (match frame on disk)."""
    out = tmp_path_factory.mktemp("generated")
    generate(2000, 11, out)
    tables, truth, _raw = generated.load_generated(out)
    columns = input_columns()
    tables = {t: f.select(columns[t]) for t, f in tables.items()}
    person = tables["person_record"].sort("record_id")
    feed = person.filter(pl.col("agency") == person["agency"][0])
    new_ids = feed["record_id"].gather_every(20)
    first = resolve(_without(tables, new_ids), now=NOW)
    state = first.stats["state"]
    match_file = out / "match.parquet"
    state.match.write_parquet(match_file)
    return tables, truth, new_ids, first, state, match_file


def _frames(res) -> dict[str, pl.DataFrame]:
    return {"entity_record": res.entity_record, "record_link": res.record_link,
            "entity_link": res.entity_link, "entity_history": res.entity_history,
            "review_pair": res.review_pair, "record_fact": res.record_fact}


def _increment(lake, decisions_before=None, decisions=None):
    tables, _truth, new_ids, first, state, match_file = lake
    return incremental.resolve_incremental(
        {t: f.lazy() for t, f in tables.items()}, new_ids, state.model, [match_file],
        state.components, _frames(first), decisions_before, decisions, ResolveSettings(),
        LATER)


def test_increment_with_the_frozen_model_equals_a_full_resolution(lake):
    tables, _truth, new_ids, first, state, _match = lake
    assert first.stats["counts"]["records"] > 3000
    assert 50 < new_ids.len() < 200
    out = _increment(lake)
    full = resolve(tables, previous=first.entity_record, now=LATER, kept=state.model)
    for name in ("entity_record", "record_link", "entity_link", "review_pair", "record_fact"):
        assert incremental.in_full_order(out.frames[name], name).equals(getattr(full, name)), name
    history = out.frames["entity_history"]
    assert history.slice(first.entity_history.height).equals(full.entity_history)
    # it read and re-resolved a small part of the lake
    assert out.stats["counts"]["affected_records"] < tables["person_record"].height / 5


def test_delta_holds_the_new_records_and_every_record_of_a_touched_entity(lake):
    _tables, _truth, new_ids, first, _state, _match = lake
    out = _increment(lake)
    delta = out.delta
    assert delta.columns == ["record_id", "entity_id_before", "entity_id_after"]
    assert set(new_ids) <= set(delta["record_id"])
    assert delta.filter(pl.col("record_id").is_in(new_ids.implode()))[
        "entity_id_before"].null_count() == new_ids.len()
    assert delta["entity_id_after"].null_count() == 0
    before, after = first.entity_record, out.frames["entity_record"]
    touched_before = set(delta["entity_id_before"].drop_nulls())
    touched_after = set(delta["entity_id_after"])
    # all records of every touched entity, before and after, are in the delta ...
    assert set(before.filter(pl.col("entity_id").is_in(list(touched_before)))["record_id"]) \
        <= set(delta["record_id"])
    assert set(after.filter(pl.col("entity_id").is_in(list(touched_after)))["record_id"]) \
        <= set(delta["record_id"])
    # ... and every other record kept its entity id
    rest = before.join(delta.select("record_id"), on="record_id", how="anti")
    assert rest.join(after, on="record_id", suffix="_after").filter(
        pl.col("entity_id") != pl.col("entity_id_after")).height == 0
    # the new records did join old entities
    joined = delta.filter(pl.col("entity_id_before").is_null()
                          & pl.col("entity_id_after").is_in(list(touched_before)))
    assert joined.height > 10


def test_a_new_record_bridging_two_entities_merges_them_with_history(tmp_path):
    """Two old entities, one holding a CN resident ID and one a passport; a new record holding
    both joins them. The merged entity keeps the id of the entity with the earliest record."""
    old = [person("d1:1", "WANG WEI", date(1990, 3, 7)),
           person("d1:2", "WONG WAI", None, sex=None, agency="th_imm"),
           person("d1:3", "LI NA", date(1985, 1, 2), sex="F")]
    old_ids = [ident("d1:1", "cn_resident_id", CN_X), ident("d1:2", "passport", "E12345678")]
    new = [person("d2:1", "WANG WEI", None, sex=None, drop="d2", agency="mm_police")]
    new_ids_rows = [ident("d2:1", "cn_resident_id", CN_X), ident("d2:1", "passport", "E12345678")]
    first = resolve(make_tables(old, old_ids), now=NOW)
    assert first.entity_record["entity_id"].n_unique() == 3
    state = first.stats["state"]
    state.match.write_parquet(tmp_path / "match.parquet")
    every = make_tables(old + new, old_ids + new_ids_rows)
    out = incremental.resolve_incremental(
        {t: f.lazy() for t, f in every.items()}, pl.Series(["d2:1"]), state.model,
        [tmp_path / "match.parquet"], state.components, _frames(first), None, None,
        ResolveSettings(), LATER)
    er = dict(out.frames["entity_record"].iter_rows())
    ids = dict(first.entity_record.select("record_id", "entity_id").iter_rows())
    ea, eb, ec = (ids[r] for r in ("d1:1", "d1:2", "d1:3"))
    assert dict(out.frames["entity_record"].select("record_id", "entity_id").iter_rows()) == {
        "d1:1": ea, "d1:2": ea, "d2:1": ea, "d1:3": ec}, er
    history = out.frames["entity_history"].slice(first.entity_history.height)
    assert history.select("old_entity_id", "new_entity_id", "change").rows() == [
        (ea, ea, "merge"), (eb, ea, "merge")]
    assert "identifier" in history["reason"][0]
    assert out.delta.rows() == [("d1:1", ea, ea), ("d1:2", eb, ea), ("d2:1", None, ea)]
    links = out.frames["record_link"].select("record_id_l", "record_id_r", "rule").rows()
    assert links == [("d1:1", "d2:1", "identifier"), ("d1:2", "d2:1", "identifier")]
    # the same as a full resolution with that model
    full = resolve(every, previous=first.entity_record, now=LATER, kept=state.model)
    assert out.frames["entity_record"].equals(full.entity_record)
    assert history.equals(full.entity_history)


def test_lazy_previous_tables_merge_to_the_same_rows(lake, tmp_path):
    """The pipeline hands the previous pair, link and history tables over as scans of their
    files (merge_frames streams them): the merged tables are lazy, with the same rows."""
    tables, _truth, new_ids, first, state, match_file = lake
    eager = _frames(first)
    lazy = {"entity_record": eager["entity_record"]}
    for name, frame in eager.items():
        if name != "entity_record":
            frame.write_parquet(tmp_path / f"{name}.parquet")
            lazy[name] = pl.scan_parquet(tmp_path / f"{name}.parquet")
    out = incremental.resolve_incremental(
        {t: f.lazy() for t, f in tables.items()}, new_ids, state.model, [match_file],
        state.components, lazy, None, None, ResolveSettings(), LATER)
    want = _increment(lake)
    for name, frame in out.frames.items():
        assert isinstance(frame, pl.LazyFrame) == (name != "entity_record"), name
        got, expected = frame.lazy().collect(), want.frames[name]
        if name in incremental.FULL_ORDER:  # the increment's entity links are in no order
            got, expected = (incremental.in_full_order(f, name) for f in (got, expected))
        assert got.equals(expected), name
    # the lazy tables are counted by their writer (fusionlake.lake.zones.write_frame)
    assert out.stats["counts"] == {**want.stats["counts"], "entity_links": None,
                                   "review_pairs": None}


def test_an_identifier_pushed_over_the_group_limit_declines(lake):
    """A new record holding a number that then has more holders than identifier_max_group:
    the number stops linking the old holders too, which only a full run sees."""
    tables, _truth, new_ids, first, state, match_file = lake
    holders = tables["identifier"].filter(
        pl.col("kind") == "cn_resident_id", pl.col("check_valid"),
        ~pl.col("record_id").is_in(new_ids.implode())).group_by("value_normalised").len()
    value, n = holders.sort("len", "value_normalised", descending=[True, False]).row(0)
    settings = ResolveSettings(identifier_max_group=n)
    extra = tables["identifier"].filter(pl.col("record_id") == new_ids[0]).head(1).with_columns(
        pl.lit("cn_resident_id").alias("kind"), pl.lit(value).alias("value_normalised"),
        pl.lit(True).alias("check_valid"))
    every = {**tables, "identifier": pl.concat([tables["identifier"], extra])}
    with pytest.raises(incremental.Declined, match=f"cn_resident_id {value} of a new record "
                       f"is held by {n + 1} records, more than identifier_max_group={n}"):
        incremental.resolve_incremental(
            {t: f.lazy() for t, f in every.items()}, new_ids, state.model, [match_file],
            state.components, _frames(first), None, None, settings, LATER)


def test_a_placeholder_number_held_by_too_many_already_stays_incremental(tmp_path):
    """A passport number typed for more people than identifier_max_group (a placeholder) is no
    evidence for anyone. A new record carrying it changes nothing for the old holders but its
    review pairs: the run stays incremental, and the new record's match frame leaves the
    number out as a full run does (with it, the same-named holders would score as a match)."""
    settings = ResolveSettings(identifier_max_group=3)
    # four old holders of the placeholder, three of them namesakes born on other days
    old = [person("d1:1", "WANG WEI", date(1961, 1, 1)),
           person("d1:2", "WANG WEI", date(1972, 2, 2)),
           person("d1:3", "WANG WEI", date(1983, 3, 3)),
           person("d1:4", "LI NA", date(1985, 1, 2))]
    placeholder = [ident(f"d1:{i}", "passport", "000000000") for i in (1, 2, 3, 4)]
    new = [person("d2:1", "WANG WEI", date(1994, 4, 4), drop="d2")]
    first = resolve(make_tables(old, placeholder), now=NOW, settings=settings)
    state = first.stats["state"]
    state.match.write_parquet(tmp_path / "match.parquet")
    every = make_tables(old + new, [*placeholder, ident("d2:1", "passport", "000000000")])
    out = incremental.resolve_incremental(
        {t: f.lazy() for t, f in every.items()}, pl.Series(["d2:1"]), state.model,
        [tmp_path / "match.parquet"], state.components, _frames(first), None, None,
        settings, LATER)
    full = resolve(every, previous=first.entity_record, now=LATER, kept=state.model,
                   settings=settings)
    for name in ("entity_record", "record_link", "entity_link", "review_pair", "record_fact"):
        assert incremental.in_full_order(out.frames[name], name).equals(getattr(full, name)), name
    assert out.new_match.filter(pl.col("record_id") == "d2:1")["passport_no"].to_list() == [None]
    # the placeholder's review pairs now name the new holder too
    reason = "identifier passport:CN 000000000 is held by too many records to be one person"
    pairs = out.frames["review_pair"].filter(pl.col("reason") == reason)
    assert pairs.select("record_id_l", "record_id_r").rows() == [
        ("d1:1", "d1:2"), ("d1:1", "d1:3"), ("d1:1", "d1:4"), ("d1:1", "d2:1")]


def test_decisions_about_records_resolved_elsewhere_change_nothing(lake):
    """A decision about records this resolution does not hold (another audience's rows, a
    superseded record) is not a change to fold in: the delta is the same as without it."""
    decided = pl.DataFrame({
        "record_id_l": ["elsewhere:1"], "record_id_r": ["elsewhere:2"], "decision": ["same"],
        "decided_by": ["steward"], "reason": ["one person"], "decided_at": [LATER]})
    assert _increment(lake, decisions=decided).delta.equals(_increment(lake).delta)


def test_new_records_filling_a_column_the_model_never_compared_decline(lake):
    """The first feed with addresses: a full run would compare postcodes, the kept model
    cannot, so the run is a full one (and trains a model that does)."""
    tables, _truth, new_ids, first, state, match_file = lake
    assert "postcode" not in state.model.match_schema
    person = tables["person_record"].with_columns(
        pl.when(pl.col("record_id").is_in(new_ids.implode())).then(pl.lit("10110"))
        .otherwise(pl.col("postcode")).alias("postcode"))
    with pytest.raises(incremental.Declined, match="new records fill postcode, which the kept "
                       "model does not compare"):
        incremental.resolve_incremental(
            {**{t: f.lazy() for t, f in tables.items()}, "person_record": person.lazy()},
            new_ids, state.model, [match_file], state.components, _frames(first), None, None,
            ResolveSettings(), LATER)


def test_generated_people_make_no_oversize_block_and_the_bound_spares_the_old_records(lake):
    """At 2,000 generated people no block is too large. The full run keeps each rule's largest
    keys; an increment whose new records cannot push a block over the limit is then checked
    without reading the old match frames (here a file that does not exist), and the bound it
    keeps grows by the new records' own largest keys."""
    tables, _truth, new_ids, first, state, match_file = lake
    assert first.stats["counts"]["skipped_blocks"] == 0
    assert first.stats["block_notes"] == []
    known = state.model.block_largest
    assert known and all(left * right <= ResolveSettings().block_max_pairs
                         for left, right in known)
    new = conform_match(match_frame(
        {t: f.filter(pl.col("record_id").is_in(new_ids.implode())) for t, f in tables.items()},
        ResolveSettings()), state.model.match_schema)
    with KeptScorer(state.model, ResolveSettings()) as scorer:
        assert scorer.oversize(new, [match_file.with_name("gone.parquet")]).height == 0
        bound = scorer.block_largest
    assert all(b[0] >= k[0] and b[1] >= k[1] for b, k in zip(bound, known, strict=True))
    assert bound != known
    # without a kept bound every old record is counted, with the same answer
    unknown = replace(state.model, block_largest=None)
    with KeptScorer(unknown, ResolveSettings()) as scorer:
        assert scorer.oversize(new, [match_file]).height == 0
        assert scorer.block_largest is None
        with pytest.raises(Exception, match=r"gone\.parquet"):
            scorer.oversize(new, [match_file.with_name("gone.parquet")])
    out = _increment(lake)
    assert out.block_largest == bound


def test_a_new_copy_that_makes_a_block_too_large_declines(tmp_path):
    """29 copies of one template row make a block of 841 candidate pairs, at the limit; a
    30th, new, makes 900: a full run would leave the block out, so the increment declines.
    An unrelated new record beside the copies stays incremental."""
    settings = ResolveSettings(block_max_pairs=29 * 29)
    copies = [person(f"t1:{i}", "AUNG AUNG", date(1990, 1, 2), nationality="MM", drop="t1")
              for i in range(1, 31)]
    old = [person("d1:1", "WANG WEI", date(1990, 3, 7)), *copies[:29]]
    first = resolve(make_tables(old), now=NOW, settings=settings)
    assert first.stats["counts"]["skipped_blocks"] == 0
    state = first.stats["state"]
    state.match.write_parquet(tmp_path / "match.parquet")

    def increment(new: dict):
        every = make_tables([*old, new])
        return incremental.resolve_incremental(
            {t: f.lazy() for t, f in every.items()}, pl.Series([new["record_id"]]),
            state.model, [tmp_path / "match.parquet"], state.components, _frames(first),
            None, None, settings, LATER)

    with pytest.raises(incremental.Declined,
                       match=r"blocking rule \d+ puts 30 records in one block \(birth_date = "
                             r"1990-01-02.*900 candidate pairs, more than "
                             r"block_max_pairs=841\) with a new record"):
        increment(copies[29])
    full = resolve(make_tables([*old, copies[29]]), now=LATER, settings=settings)
    assert full.stats["counts"]["skipped_blocks"] >= 1
    out = increment(person("d2:1", "LI NA", date(1985, 1, 2), sex="F", drop="d2"))
    assert out.stats["counts"]["new_records"] == 1


def test_the_records_of_a_block_too_large_are_left_out_of_training(lake):
    """Copies of one row must not teach the model: the records of the generated lake with 40
    copies of a template added, resolved with a limit the copies exceed, train exactly the
    model the records alone train (the same prior, m and u), and the copies stay apart."""
    tables, _truth, new_ids, _first, state, _match = lake
    copies = [person(f"t1:{i}", "AUNG AUNG", date(1990, 1, 2), nationality="MM", drop="t1")
              for i in range(1, 41)]
    extra = make_tables(copies)
    every = {t: pl.concat([f, extra[t].select(f.columns)]) if t in extra else f
             for t, f in _without(tables, new_ids).items()}
    result = resolve(every, settings=ResolveSettings(block_max_pairs=40 * 40 - 1), now=NOW)
    assert result.stats["model"] == "trained on the data"
    assert "trained without the 40 records of blocks too large to compare" in result.stats[
        "model_notes"]
    trained, alone = (json.loads(m) for m in (result.stats["state"].model.model_json,
                                              state.model.model_json))
    assert trained["probability_two_random_records_match"] == alone[
        "probability_two_random_records_match"]
    # the same up to the last bits of EM's sums, which DuckDB adds in no fixed order
    def levels(model):
        return [(c["output_column_name"], level["label_for_charts"],
                 level.get("m_probability"), level.get("u_probability"))
                for c in model["comparisons"] for level in c["comparison_levels"]]

    assert len(levels(trained)) == len(levels(alone))
    for got, want in zip(levels(trained), levels(alone), strict=True):
        assert got[:2] == want[:2]
        assert list(got[2:]) == [w if w is None else pytest.approx(w, rel=1e-9)
                                 for w in want[2:]], got
    assert result.entity_record.filter(pl.col("record_id").str.starts_with("t1:"))[
        "entity_id"].n_unique() == 40


def test_new_records_that_touch_two_records_of_a_block_left_out_decline(tmp_path):
    """A full run leaves a block too large to compare out of its rule and reviews it. An
    increment scores every pair of the records it re-resolves, so when new records touch two
    records of such a block it would compare them where the full run did not (a record
    touching all of 8,692 copies would make it score 75M pairs): it declines, and the full run
    leaves the block out again. New records that touch one copy alone stay incremental and give
    the full run's review queue."""
    settings = ResolveSettings(block_max_pairs=29 * 29 - 1)
    copies = [person(f"t1:{i:02d}", "AUNG AUNG", date(1990, 1, 2), nationality="MM",
                     drop="t1") for i in range(1, 30)]
    nrc = [ident("t1:01", "mm_nrc", "12/ABC(N)000001", country="MM"),
           ident("t1:02", "mm_nrc", "12/ABC(N)000002", country="MM")]
    old = [person("d1:1", "WANG WEI", date(1990, 3, 7)), *copies]
    first = resolve(make_tables(old, nrc), now=NOW, settings=settings)
    assert first.stats["counts"]["skipped_blocks"] >= 1
    block = pl.col("reason").str.ends_with("too many to compare pair by pair")
    assert first.review_pair.filter(block).height == 28
    state = first.stats["state"]
    state.match.write_parquet(tmp_path / "match.parquet")

    def increment(new: list[dict], held: list[dict]):
        every = make_tables([*old, *new], [*nrc, *held])
        ids = pl.Series([p["record_id"] for p in new])
        out = incremental.resolve_incremental(
            {t: f.lazy() for t, f in every.items()}, ids, state.model,
            [tmp_path / "match.parquet"], state.components, _frames(first), None, None,
            settings, LATER)
        return out, resolve(every, previous=first.entity_record, now=LATER, settings=settings)

    def holder(rid: str, value: str) -> tuple[dict, dict]:  # another person with that NRC
        return (person(rid, "LI NA", date(1985, 6, 1), sex="F", nationality="MM", drop="d2"),
                ident(rid, "mm_nrc", value, country="MM"))

    (a, ida), (b, idb) = holder("d2:1", nrc[0]["value_normalised"]), holder(
        "d2:2", nrc[1]["value_normalised"])
    with pytest.raises(incremental.Declined,
                       match=r"^the new records touch 2 records of a block left out as too "
                             r"large to compare \(blocking rule \d+ puts 29 records in one "
                             r"block \(birth_date = 1990-01-02"):
        increment([a, b], [ida, idb])
    full = resolve(make_tables([*old, a, b], [*nrc, ida, idb]), now=LATER, settings=settings)
    assert full.review_pair.filter(block).height == 28  # left out and reviewed again

    out, full = increment([a], [ida])  # one copy touched: nothing of the block is compared
    assert out.stats["counts"]["new_records"] == 1

    def queue(frame: pl.DataFrame) -> list[tuple]:
        return sorted(frame.select("record_id_l", "record_id_r", "priority", "reason")
                      .iter_rows())

    assert queue(out.frames["review_pair"]) == queue(full.review_pair)
    assert len([r for r in queue(full.review_pair) if r[3].endswith("pair by pair")]) == 28


def test_new_copies_that_make_the_copies_too_many_pairs_decline(tmp_path):
    """Two template rows copied 12 and 10 times make 111 pairs of copies, within the budget
    (150); every block is within block_max_pairs. Two more copies of the second stay
    incremental: the bound the kept count gives (without reading the old records) keeps
    within the budget. A third template copied 10 times (a block of 100 pairs) would make 156:
    the increment counts the old records, declines, and the full run leaves the largest group
    out."""
    settings = ResolveSettings(block_max_pairs=150, identical_pairs_per_record=0)

    def copies(tag: str, name: str, born: date, first: int, n: int) -> list[dict]:
        return [person(f"{tag}:{i:02d}", name, born, nationality="MM", drop=tag)
                for i in range(first, first + n)]

    old = [person("d1:1", "WANG WEI", date(1990, 3, 7)),
           *copies("t1", "AUNG AUNG", date(1990, 1, 2), 1, 12),
           *copies("t2", "MAUNG MYA", date(1981, 5, 6), 1, 10)]
    first = resolve(make_tables(old), now=NOW, settings=settings)
    assert first.stats["counts"]["skipped_blocks"] == 0
    state = first.stats["state"]
    assert state.model.identical == (66 + 45, 12)
    state.match.write_parquet(tmp_path / "match.parquet")

    def increment(new: list[dict], match_files: list[Path]):
        every = make_tables([*old, *new])
        return incremental.resolve_incremental(
            {t: f.lazy() for t, f in every.items()}, pl.Series([p["record_id"] for p in new]),
            state.model, match_files, state.components, _frames(first), None, None,
            settings, LATER)

    two = copies("t2", "MAUNG MYA", date(1981, 5, 6), 11, 2)
    new = conform_match(match_frame(make_tables(two), settings), state.model.match_schema)
    with KeptScorer(state.model, settings) as scorer:  # 111 + 1 + 2 x 12 <= 150: not read
        assert scorer.copies_over(new, [tmp_path / "gone.parquet"]) is None
        assert scorer.identical == (136, 14)
    with KeptScorer(replace(state.model, identical=None), settings) as scorer:  # counted
        assert scorer.copies_over(new, [tmp_path / "match.parquet"]) is None
        assert scorer.identical == (66 + 66, 12)
    out = increment(two, [tmp_path / "match.parquet"])
    assert out.identical == (136, 14)
    ids = {f"t2:{i:02d}" for i in range(1, 13)}
    assert frozenset(ids) in {frozenset(g) for g in out.frames["entity_record"].group_by(
        "entity_id").agg("record_id")["record_id"].to_list()}

    third = copies("t3", "KYAW ZAW", date(1977, 8, 9), 1, 10)
    with pytest.raises(incremental.Declined,
                       match=r"^records identical in every compared column, the new ones "
                             r"counted, would make 156 pairs among themselves, more than "
                             r"identical_budget=150$"):
        increment(third, [tmp_path / "match.parquet"])
    full = resolve(make_tables([*old, *third]), now=LATER, settings=settings)
    assert full.stats["state"].model.identical == (45 + 45, 12)
    t1 = [f"t1:{i:02d}" for i in range(1, 13)]
    assert full.entity_record.filter(pl.col("record_id").is_in(t1))[
        "entity_id"].n_unique() == 12
