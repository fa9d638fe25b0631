"""Steward decisions from the command line: review side by side, decide, undo, list.

The lake holds a resolution written through zones (the pipeline's own writer) with one review
pair; the undo test then resolves real records with the decisions read back as a run reads them.
"""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest
from test_resolve import BASE, NOW, entity_of, person, tables

from fusionlake.cli import main
from fusionlake.lake import zones
from fusionlake.lake.schema import conform
from fusionlake.lake.store import open_store
from transforms.resolution.resolve import resolve

_EVIDENCE = json.dumps({
    "l": {"agency": "cn_mps", "feed": "suspects", "drop_id": "d1", "source_row": 4,
          "name_original": "王伟", "name_latin": "WANG WEI", "birth_date": "1990-03-07",
          "sex": "M", "nationality": "CN", "national_id": "110101199003078515"},
    "r": {"agency": "th_imm", "feed": "repatriations", "drop_id": "d2", "source_row": 9,
          "name_original": "WANG WEI", "name_latin": "Wang Wei", "birth_date": "1990-07-03",
          "sex": "M", "nationality": None, "national_id": None},
}, ensure_ascii=False)


@pytest.fixture
def lake(tmp_path):
    uri = str(tmp_path / "lake")
    records = ["d1:4", "d2:9", "d1:5"]
    zones.write_resolution(open_store(uri), {
        "entity_record": conform(pl.DataFrame({"entity_id": ["e1", "e2", "e3"],
                                               "record_id": records}), "entity_record"),
        "review_pair": conform(pl.DataFrame([{
            "record_id_l": "d1:4", "record_id_r": "d2:9", "match_probability": 0.512,
            "priority": 0.976, "reason": "uncertain match probability",
            "evidence": _EVIDENCE}]), "review_pair"),
    }, run_id="run-1")
    return uri


def test_review_shows_the_two_records_side_by_side(lake, capsys):
    assert main(["review", "--lake", lake]) == 0
    out = capsys.readouterr().out
    lines = [" ".join(line.replace("│", " ").replace("┃", " ").split())
             for line in out.splitlines()]
    assert "1. uncertain match probability: probability 0.512, priority 0.976" in lines
    assert "field A d1:4 B d2:9" in lines
    assert "agency cn_mps th_imm" in lines  # provenance: shown, not marked
    assert "name_latin WANG WEI = Wang Wei" in lines  # agree, case aside
    assert "birth_date 1990-03-07 ≠ 1990-07-03" in lines
    assert "nationality CN" in lines  # one side empty: nothing to compare
    assert not any("{" in line for line in lines)  # no raw JSON


def test_review_as_json(lake, capsys):
    assert main(["review", "--lake", lake, "--format", "json"]) == 0
    [pair] = json.loads(capsys.readouterr().out)
    assert (pair["record_id_l"], pair["record_id_r"], pair["match_probability"]) == (
        "d1:4", "d2:9", 0.512)
    fields = {f["field"]: (f["a"], f["b"], f["agree"]) for f in pair["fields"]}
    assert fields["birth_date"] == ("1990-03-07", "1990-07-03", False)
    assert fields["sex"] == ("M", "M", True)
    assert fields["national_id"] == ("110101199003078515", None, None)
    assert "passport_no" not in fields  # empty on both sides


def test_a_record_cannot_be_decided_against_itself(lake, capsys):
    assert main(["decide", "--lake", lake, "d1:4", "d1:4", "--same", "--by", "ploy",
                 "--why", "x"]) == 2
    assert capsys.readouterr().err == (
        "fusionlake decide: d1:4 is one record: a decision needs two different ones\n")
    assert zones.read_decisions(open_store(lake), include_undone=True).is_empty()


def test_decide_undo_and_list(lake, capsys):
    store = open_store(lake)
    assert main(["decide", "--lake", lake, "d1:4", "d1:5", "--undo", "--by", "ploy",
                 "--why", "x"]) == 2
    assert "no decision on d1:4 and d1:5 to undo" in capsys.readouterr().err
    for verdict, who, why in [("--same", "ploy", "same passport photo"),
                              ("--different", "nok", "twins"), ("--undo", "nok", "not twins")]:
        assert main(["decide", "--lake", lake, "d2:9", "d1:4", verdict, "--by", who,
                     "--why", why]) == 0
    assert "the decision on d1:4 and d2:9 is withdrawn (by nok)" in capsys.readouterr().out
    assert zones.read_decisions(store).is_empty()  # what the next run replays: nothing
    assert main(["decisions", "--lake", lake, "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["record_id_l"], d["record_id_r"], d["decision"], d["status"], d["decided_by"])
            for d in listed] == [("d1:4", "d2:9", "same", "superseded", "ploy"),
                                 ("d1:4", "d2:9", "different", "undone", "nok"),
                                 ("d1:4", "d2:9", "undo", "undo", "nok")]
    assert main(["decide", "--lake", lake, "d1:4", "d2:9", "--same", "--by", "ploy",
                 "--why", "again"]) == 0
    assert main(["decisions", "--lake", lake]) == 0
    out = capsys.readouterr().out
    assert [line.split("│")[5].strip() for line in out.splitlines()
            if line.startswith("│")] == ["superseded", "undone", "undo", "standing"]
    assert main(["decisions", "--lake", lake, "--record", "nope:1"]) == 0
    assert capsys.readouterr().out.strip() == "no decisions on nope:1"  # not "no decisions yet"
    assert zones.read_decisions(store).select("decision", "reason").rows() == [
        ("same", "again")]


def test_a_decision_on_a_record_that_left_the_lake_is_shown_not_applied_and_can_be_undone(
        lake, capsys):
    """A later drop superseded one of the records a steward had decided on: ``decisions`` still
    called the decision standing, and ``decide --undo`` refused it ("unknown record id"), so
    the steward could neither see nor clear it (found by a helper playing the data steward)."""
    store = open_store(lake)
    assert main(["decide", "--lake", lake, "d1:4", "d1:5", "--different", "--by", "ploy",
                 "--why", "two brothers"]) == 0
    zones.write_resolution(store, {  # the next run: d1:5 superseded by d3:1
        "entity_record": conform(pl.DataFrame({"entity_id": ["e1", "e2", "e4"],
                                               "record_id": ["d1:4", "d2:9", "d3:1"]}),
                                 "entity_record"),
    }, run_id="run-2")
    capsys.readouterr()
    assert main(["decisions", "--lake", lake, "--format", "json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["status"] == "not applied"
    assert main(["decide", "--lake", lake, "d1:5", "d3:1", "--same", "--by", "ploy",
                 "--why", "x"]) == 2  # a new decision still needs records the lake holds
    assert "unknown record id(s): d1:5" in capsys.readouterr().err
    assert main(["decide", "--lake", lake, "d1:5", "d1:4", "--undo", "--by", "ploy",
                 "--why", "the record is gone"]) == 0
    assert "is withdrawn" in capsys.readouterr().out
    assert zones.read_decisions(store).is_empty()
    assert main(["decisions", "--lake", lake, "--format", "json"]) == 0
    assert [d["status"] for d in json.loads(capsys.readouterr().out)] == ["undone", "undo"]


def test_a_run_after_an_undo_lets_the_model_decide_again(tmp_path):
    """The resolver replays what zones.read_decisions gives: an undone decision is gone."""
    store = open_store(str(tmp_path / "lake"))
    t = tables([*BASE, person("d1:5", "CHAN KIT", None)])
    assert entity_of(resolve(t, now=NOW), "d1:1") == entity_of(resolve(t, now=NOW), "d1:2")
    zones.append_decision(store, "d1:1", "d1:2", "different", "nok", "father and son")
    decided = resolve(t, decisions=zones.read_decisions(store), now=NOW)
    assert entity_of(decided, "d1:1") != entity_of(decided, "d1:2")
    zones.append_decision(store, "d1:2", "d1:1", "undo", "nok", "the same man after all")
    undone = resolve(t, decisions=zones.read_decisions(store), previous=decided.entity_record,
                     now=NOW)
    assert entity_of(undone, "d1:1") == entity_of(undone, "d1:2")
    assert date(1990, 3, 7) == BASE[0]["birth_date"]  # the model's reason: same name and birth
