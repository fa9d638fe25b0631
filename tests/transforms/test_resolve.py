"""Entity resolution on small hand-made canonical frames, through real Splink on DuckDB.

Each frame is a few records whose defects are named in comments. Below 1,000 records resolve()
scores pairs with the declared prior m/u probabilities (no training), so these tests are fast
and their probabilities are fixed by er_settings.py.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import polars as pl
import pytest

from fusionlake.lake.schema import conform
from transforms.resolution.ids import assign_ids, derived_id
from transforms.resolution.resolve import (
    ResolveSettings,
    _with_agreement,
    latest_decisions,
    resolve,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CN_X = "110101199003078515"  # two different valid CN resident IDs (same person data otherwise)
CN_Y = "11010119900307651X"


def person(rid: str, name: str, birth: date | None, sex: str | None = "M",
           nationality: str | None = "CN", drop: str = "d1", **extra) -> dict:
    """One person record; name is 'FAMILY GIVEN' in Latin."""
    family, _, given = name.partition(" ")
    tokens = sorted(name.split())
    return {
        "record_id": rid, "agency": extra.pop("agency", "cn_mps"), "feed": "suspects",
        "drop_id": drop, "source_row": int(rid.split(":")[-1]), "source_key": rid,
        "name_original": name, "name_latin": name, "family_name": family,
        "given_name": given or None, "name_key_sorted": " ".join(tokens),
        "name_key_phonetic": " ".join(t[:3] for t in tokens),
        "birth_date": birth, "birth_date_precision": "day" if birth else None,
        "sex": sex, "nationality": nationality, **extra,
    }


def ident(rid: str, kind: str, value: str, valid: bool | None = True, country: str | None = "CN",
          implied_birth: date | None = None, implied_sex: str | None = None) -> dict:
    return {"record_id": rid, "kind": kind, "value_original": value, "value_normalised": value,
            "issuing_country": country, "check_valid": valid,
            "implied_birth_date": implied_birth, "implied_sex": implied_sex}


def tables(persons: list[dict], identifiers: list[dict] = (), phones: list[dict] = (),
           events: list[dict] = ()) -> dict[str, pl.DataFrame]:
    def frame(rows, table):
        return conform(pl.DataFrame(list(rows)), table) if rows else conform(
            pl.DataFrame({"record_id": []}, schema={"record_id": pl.String}), table)
    return {"person_record": frame(persons, "person_record"),
            "identifier": frame(identifiers, "identifier"),
            "phone": frame(phones, "phone"), "event": frame(events, "event")}


def entity_of(result, rid: str) -> str:
    return result.entity_record.filter(pl.col("record_id") == rid)["entity_id"].item()


def groups(result) -> set[frozenset[str]]:
    return {frozenset(g) for g in result.entity_record.group_by("entity_id").agg(
        pl.col("record_id"))["record_id"].to_list()}


BASE = [
    person("d1:1", "WANG WEI", date(1990, 3, 7)),
    person("d1:2", "WANG WEI", date(1990, 3, 7)),  # the same person, sent twice
    person("d1:3", "LI NA", date(1985, 1, 2), sex="F"),
    person("d1:4", "CHEN JIE", date(1979, 11, 30)),
]


def test_agreement_lists_each_field_by_the_sign_of_its_weight_in_the_order_compared():
    # Weights above, below and at zero, and missing (a link no model scored, or a field one
    # record lacks), in every mix: the lists are made once per pattern and joined back, so
    # every row must still get its own, in its own place.
    names = ["name", "birth_date", "sex"]
    values = [1.5, -0.25, 0.0, None]
    rows = [dict(zip([f"w_{n}" for n in names], (a, b, c), strict=True), i=i)
            for i, (a, b, c) in enumerate(
                (a, b, c) for a in values for b in values for c in values)]
    links = pl.DataFrame(rows * 3, schema={"w_name": pl.Float64, "w_birth_date": pl.Float64,
                                            "w_sex": pl.Float64, "i": pl.Int64})
    got = _with_agreement(links, names)
    assert got.columns == [*links.columns, "agreed", "disagreed"]
    assert got["i"].to_list() == links["i"].to_list()
    for row in got.iter_rows(named=True):
        weights = {n: row[f"w_{n}"] for n in names}
        assert row["agreed"] == [n for n in names if (weights[n] or 0) > 0], row
        assert row["disagreed"] == [n for n in names if (weights[n] or 0) < 0], row
    none = _with_agreement(links.head(2), [])
    assert none["agreed"].to_list() == [[], []] and none["disagreed"].to_list() == [[], []]


def test_probabilistic_match_and_explanation():
    result = resolve(tables(BASE), now=NOW)
    assert groups(result) == {frozenset({"d1:1", "d1:2"}), frozenset({"d1:3"}),
                              frozenset({"d1:4"})}
    link = result.record_link.row(0, named=True)
    assert (link["record_id_l"], link["record_id_r"], link["rule"]) == ("d1:1", "d1:2",
                                                                       "probabilistic")
    assert link["match_probability"] > 0.99
    assert link["agreed"] == ["name", "birth_date", "sex", "nationality"]
    assert link["disagreed"] == []
    evidence = json.loads(link["evidence"])
    assert set(evidence) == {"identifiers", "weights"}  # the values compared are per record:
    assert evidence["weights"]["name"] > 0
    facts = {r["record_id"]: r for r in result.record_fact.iter_rows(named=True)}
    assert sorted(facts) == ["d1:1", "d1:2", "d1:3", "d1:4"]  # once each, in order
    assert facts["d1:1"]["drop_id"] == "d1"
    assert facts["d1:2"]["source_row"] == 2
    assert facts["d1:1"]["birth_date"] == date(1990, 3, 7)
    # The entity id derives from the smallest record id of the cluster.
    assert entity_of(result, "d1:2") == derived_id("d1:1")


def test_a_new_id_never_takes_an_old_one_kept_elsewhere_or_one_taken():
    """A split leaves the part without the old entity's most records a fresh id, even when
    the derived id of its smallest record is the old id (kept by the larger part); an id in
    ``taken`` (an entity an incremental run leaves alone) is never given out either."""
    old = derived_id("a")
    previous = pl.DataFrame({"entity_id": [old] * 3, "record_id": ["a", "b", "c"]})
    clusters = pl.DataFrame({"record_id": ["a", "b", "c", "x"],
                             "cluster": ["a", "b", "b", "x"]})
    ids = dict(assign_ids(clusters, previous,
                          taken=pl.Series([derived_id("x"), derived_id("x", 1)])).iter_rows())
    assert ids == {"a": derived_id("a", 1), "b": old, "x": derived_id("x", 2)}
    # with nothing before, each cluster's id derives from its smallest record
    assert dict(assign_ids(clusters, None).iter_rows()) == {
        c: derived_id(c) for c in ("a", "b", "x")}


def test_identifier_links_deterministically_across_spellings():
    persons = [
        person("d1:1", "WANG WEI", date(1990, 3, 7)),
        # Same person, name transliterated differently and no birth date: the valid CN ID
        # links it, and implies the birth date and sex.
        person("d2:1", "WONG WAI", None, sex=None, drop="d2", agency="th_imm"),
        # Same number but the check digit fails: no deterministic link (and names differ).
        person("d3:1", "ZHOU XUN", date(1970, 5, 5), drop="d3"),
    ]
    ids = [ident("d1:1", "cn_resident_id", CN_X), ident("d2:1", "cn_resident_id", CN_X,
                                                        implied_birth=date(1990, 3, 7),
                                                        implied_sex="M"),
           ident("d3:1", "cn_resident_id", CN_X, valid=False)]
    result = resolve(tables(persons, ids), now=NOW)
    assert groups(result) == {frozenset({"d1:1", "d2:1"}), frozenset({"d3:1"})}
    link = result.record_link.row(0, named=True)
    assert link["rule"] == "identifier"
    assert json.loads(json.loads(link["evidence"])["identifiers"]) == {
        "identifier": "cn_resident_id:CN", "value": CN_X}
    # The implied birth date and sex were compared (and agreed).
    assert "birth_date" in link["agreed"] and "sex" in link["agreed"]


def test_two_valid_national_ids_never_share_an_entity():
    persons = [
        person("d1:1", "WANG WEI", date(1990, 3, 7)),
        person("d1:2", "WANG WEI", date(1990, 3, 7)),  # namesake, same birthday, other ID
        person("d1:3", "WANG WEI", date(1990, 3, 7)),  # no ID: may join one of them, not both
        person("d1:4", "WANG WEI", date(1990, 3, 7)),  # holds ID X: linked to d1:1 for sure
    ]
    ids = [ident("d1:1", "cn_resident_id", CN_X), ident("d1:2", "cn_resident_id", CN_Y),
           ident("d1:4", "cn_resident_id", CN_X)]
    result = resolve(tables(persons, ids), now=NOW)
    assert entity_of(result, "d1:1") == entity_of(result, "d1:4")
    assert entity_of(result, "d1:1") != entity_of(result, "d1:2")
    # Each refused link is queued for a steward, conflicts first.
    top = result.review_pair.row(0, named=True)
    assert "different cn_resident_id:CN" in top["reason"]
    assert top["priority"] > 1.0
    for group in groups(result):
        assert not {"d1:1", "d1:2"} <= group


def test_association_values_link_entities_and_hubs_are_flagged():
    persons = [person(f"d1:{i}", f"PERSON{i} X{i}", date(1960 + i, 1, 1)) for i in range(1, 14)]
    shared = "+8613800000000"  # the compound's phone: 12 of 13 people call from it
    pair = "+66812345678"  # shared by two people only
    phones = [{"record_id": f"d1:{i}", "relation": "own", "e164": shared} for i in range(1, 13)]
    phones += [{"record_id": "d1:1", "relation": "own", "e164": pair},
               {"record_id": "d1:13", "relation": "own", "e164": pair}]
    result = resolve(tables(persons, phones=phones), now=NOW)
    # Shared phones never merge people.
    assert result.entity_record["entity_id"].n_unique() == 13
    links = result.entity_link
    hub = links.filter(pl.col("value") == shared)
    # A hub (12 holders > hub_min_entities) is a star around its smallest entity: 11 spokes,
    # not the 66 pairs of a clique.
    assert hub.height == 11
    assert hub["entity_id_l"].n_unique() == 1
    assert hub["is_hub"].all()
    lone = links.filter(pl.col("value") == pair).row(0, named=True)
    assert lone["is_hub"] is False and lone["via"] == "phone"
    # the weight is the marts' to compute, over the entities each audience sees (40_links.sql)
    assert links["weight"].null_count() == links.height
    # and so are the records on each side: the marts list those their audience may see
    assert "evidence" not in links.columns


def test_hub_above_clique_size_becomes_a_star():
    persons = [person(f"d1:{i}", f"P{i} Q{i}", date(1950, 1, i)) for i in range(1, 8)]
    events = [{"record_id": f"d1:{i}", "compound": "KK Park"} for i in range(1, 8)]
    settings = ResolveSettings(hub_min_entities=3, hub_max_clique=4)
    result = resolve(tables(persons, events=events), settings=settings, now=NOW)
    star = result.entity_link
    assert star.height == 6  # 7 entities: 6 spokes, not 21 pairs
    assert star["entity_id_l"].n_unique() == 1
    assert star["entity_id_l"][0] == result.entity_record["entity_id"].min()  # the smallest
    assert star["is_hub"].all()


def test_ids_are_stable_across_reruns_and_new_drops():
    first = resolve(tables(BASE), now=NOW)
    again = resolve(tables(BASE), previous=first.entity_record, now=NOW)
    assert again.entity_record.equals(first.entity_record)
    assert again.entity_history.height == 0
    # A new drop: one more record of LI NA, and a new person.
    added = [*BASE, person("d9:1", "LI NA", date(1985, 1, 2), sex="F", drop="d9"),
             person("d9:2", "ZHAO LEI", date(2000, 8, 8), drop="d9")]
    later = resolve(tables(added), previous=first.entity_record, now=NOW)
    for rid in ("d1:1", "d1:2", "d1:3", "d1:4"):
        assert entity_of(later, rid) == entity_of(first, rid)
    assert entity_of(later, "d9:1") == entity_of(first, "d1:3")
    history = later.entity_history
    assert history.select("old_entity_id", "new_entity_id", "change").rows() == [
        (None, entity_of(later, "d9:2"), "new")]
    assert history["changed_at"][0] == NOW


def test_merge_and_split_are_recorded_in_history():
    persons = [person("d1:1", "WANG WEI", date(1990, 3, 7)),
               person("d1:2", "WANG W", None, sex=None, nationality=None)]
    first = resolve(tables(persons), now=NOW)
    assert first.entity_record["entity_id"].n_unique() == 2
    # A new drop proves d1:1 and d1:2 are one person: d2:1 holds both their passports.
    more = [*persons, person("d2:1", "WANG WEI", None, drop="d2")]
    ids = [ident("d1:1", "passport", "E12345678"), ident("d1:2", "passport", "EA7654321"),
           ident("d2:1", "passport", "E12345678"), ident("d2:1", "passport", "EA7654321")]
    merged = resolve(tables(more, ids), previous=first.entity_record, now=NOW)
    assert entity_of(merged, "d1:1") == entity_of(merged, "d1:2") == entity_of(first, "d1:1")
    rows = merged.entity_history.filter(pl.col("change") == "merge").select(
        "old_entity_id", "new_entity_id").rows()
    assert sorted(rows) == sorted([(entity_of(first, "d1:1"), entity_of(first, "d1:1")),
                                   (entity_of(first, "d1:2"), entity_of(first, "d1:1"))])
    # A steward then splits d1:2 off again: recorded as a split of the merged entity.
    decision = conform(pl.DataFrame([{
        "record_id_l": "d1:2", "record_id_r": "d2:1", "decision": "different",
        "decided_by": "steward1", "reason": "two passports of two men", "decided_at": NOW}]),
        "decision")
    split = resolve(tables(more, ids), decisions=decision, previous=merged.entity_record,
                    now=NOW)
    assert entity_of(split, "d1:2") != entity_of(split, "d2:1")
    assert entity_of(split, "d1:1") == entity_of(merged, "d1:1")  # the larger part keeps it
    changes = split.entity_history.select("old_entity_id", "change").rows()
    assert changes == [(entity_of(merged, "d1:1"), "split")] * 2


def test_steward_decisions_override_the_model_and_survive_reruns():
    t = tables([*BASE, person("d1:5", "CHAN KIT", None)])
    decisions = conform(pl.DataFrame([
        # The model merges d1:1 and d1:2; the steward knows they are father and son.
        {"record_id_l": "d1:2", "record_id_r": "d1:1", "decision": "same", "decided_by": "a",
         "reason": "", "decided_at": datetime(2026, 1, 1, tzinfo=UTC)},
        {"record_id_l": "d1:1", "record_id_r": "d1:2", "decision": "different",
         "decided_by": "b", "reason": "father and son", "decided_at": datetime(2026, 2, 1,
                                                                               tzinfo=UTC)},
        # Cantonese and Mandarin spellings of one man the model cannot join.
        {"record_id_l": "d1:4", "record_id_r": "d1:5", "decision": "same", "decided_by": "b",
         "reason": "same man, Cantonese spelling", "decided_at": datetime(2026, 2, 1,
                                                                         tzinfo=UTC)},
    ]), "decision")
    assert latest_decisions(decisions).select("record_id_l", "record_id_r", "decision").rows() \
        == [("d1:1", "d1:2", "different"), ("d1:4", "d1:5", "same")]
    first = resolve(t, decisions=decisions, now=NOW)
    assert entity_of(first, "d1:1") != entity_of(first, "d1:2")
    assert entity_of(first, "d1:4") == entity_of(first, "d1:5")
    link = first.record_link.filter(pl.col("record_id_l") == "d1:4").row(0, named=True)
    assert link["rule"] == "steward"
    # Decided pairs are not sent to review again.
    assert first.review_pair.filter((pl.col("record_id_l") == "d1:1")
                                    & (pl.col("record_id_r") == "d1:2")).height == 0
    rerun = resolve(t, decisions=decisions, previous=first.entity_record, now=NOW)
    assert rerun.entity_record.equals(first.entity_record)


def test_weak_links_do_not_chain():
    # d1:2 (sex unknown, birth date one digit off each way) is equally close to d1:1 and
    # d1:3, who differ in sex and birth date: one weak link each way must not chain them.
    persons = [person("d1:1", "LIU YANG", date(1990, 1, 1), sex="M"),
               person("d1:2", "LIU YANG", date(1990, 1, 11), sex=None),
               person("d1:3", "LIU YANG", date(1990, 11, 11), sex="F")]
    result = resolve(tables(persons), now=NOW)
    # d1:2 joins d1:1 first (ids break the tie), then d1:3 is refused: d1:1-d1:3 is scored apart.
    assert groups(result) == {frozenset({"d1:1", "d1:2"}), frozenset({"d1:3"})}
    review = result.review_pair.select("record_id_l", "record_id_r").rows()
    assert ("d1:2", "d1:3") in review
    reasons = result.review_pair["reason"].to_list()
    assert any("scores as different" in r for r in reasons)


def test_bad_decision_value_is_refused_with_the_pair_named():
    bad = conform(pl.DataFrame([{"record_id_l": "a", "record_id_r": "b", "decision": "maybe"}]),
                  "decision")
    with pytest.raises(ValueError, match=r"\(a, b\) is 'maybe'"):
        resolve(tables(BASE), decisions=bad)


def test_weak_link_does_not_join_two_established_clusters():
    persons = [
        person("d1:1", "HUANG MIN", date(1975, 2, 2)),
        person("d1:2", "ZHOU PING", date(1990, 1, 1)),  # passport E1.. with d1:1
        person("d2:1", "ZHOU PING", date(1990, 5, 5), drop="d2"),  # close to d1:2, not equal
        person("d2:2", "SUN LEI", date(1966, 6, 6), drop="d2"),  # Thai ID with d2:1
    ]
    persons[1]["birth_date_precision"] = "year"  # 1990 only: agrees with d2:1 imprecisely
    ids = [ident("d1:1", "passport", "E12345678"), ident("d1:2", "passport", "E12345678"),
           ident("d2:1", "th_national_id", "1101700203451", country="TH"),
           ident("d2:2", "th_national_id", "1101700203451", country="TH")]
    result = resolve(tables(persons, ids), now=NOW)
    assert groups(result) == {frozenset({"d1:1", "d1:2"}), frozenset({"d2:1", "d2:2"})}
    row = result.review_pair.row(0, named=True)
    assert (row["record_id_l"], row["record_id_r"]) == ("d1:2", "d2:1")
    assert 0.5 < row["match_probability"] < 0.99
    assert row["reason"] == ("probabilistic link refused: would join two multi-record clusters "
                             "on a weak link")


def test_identity_number_held_by_too_many_records_goes_to_review():
    # A placeholder passport number typed for three unrelated people.
    persons = [person("d1:1", "A B", date(1970, 1, 1)), person("d1:2", "C D", date(1980, 1, 1)),
               person("d1:3", "E F", date(1990, 1, 1))]
    ids = [ident(f"d1:{i}", "passport", "000000000") for i in (1, 2, 3)]
    result = resolve(tables(persons, ids), settings=ResolveSettings(identifier_max_group=2),
                     now=NOW)
    assert result.entity_record["entity_id"].n_unique() == 3
    assert result.record_link.height == 0
    assert result.review_pair["reason"].to_list() == [
        "identifier passport:CN 000000000 is held by too many records to be one person"] * 2
    assert result.stats["counts"]["links"] == {}


def test_no_records_gives_empty_tables_with_their_schemas():
    result = resolve({"person_record": conform(pl.DataFrame({"record_id": []},
                                                            schema={"record_id": pl.String}),
                                               "person_record")})
    assert result.entity_record.schema == conform(result.entity_record, "entity_record").schema
    assert [getattr(result, t).height for t in ("entity_record", "record_link", "entity_link",
                                                "entity_history", "review_pair",
                                                "record_fact")] == [0] * 6


@pytest.mark.parametrize(("decided", "expected"), [(False, "identifier"), (True, "steward")])
def test_a_pair_linked_several_ways_is_explained_by_its_strongest_rule(decided, expected):
    # Same name, birth date and valid CN resident ID: the model, the identifier and (when
    # decided) a steward all link the pair; LINK_RULES ranks steward > identifier > model.
    persons = [person("d1:1", "WANG WEI", date(1990, 3, 7)),
               person("d2:1", "WANG WEI", date(1990, 3, 7), drop="d2")]
    ids = [ident("d1:1", "cn_resident_id", CN_X), ident("d2:1", "cn_resident_id", CN_X)]
    decisions = conform(pl.DataFrame([
        {"record_id_l": "d1:1", "record_id_r": "d2:1", "decision": "same", "decided_by": "a",
         "reason": "", "decided_at": NOW}]), "decision") if decided else None
    result = resolve(tables(persons, ids), decisions=decisions, now=NOW)
    assert result.record_link.select("record_id_l", "record_id_r", "rule").rows() == [
        ("d1:1", "d2:1", expected)]
    assert result.record_link["match_probability"].item() > 0.5  # the model linked it too
