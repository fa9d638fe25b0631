"""What `fusionlake run` prints and returns: plain markdown when piped, JSON, --fail-on."""

from __future__ import annotations

import json
import re

import pytest

from fusionlake.lake.ledger import DropState
from fusionlake.pipeline.stage import DropResult
from fusionlake.pipeline.summary import RunSummary, read_before


def _summary() -> RunSummary:
    s = RunSummary("run-7", "/lake")
    s.drops = [
        DropResult("d1", "cn_mps/suspects/s.csv", DropState.STAGED, "ok", rows=40,
                   quarantined=1, flagged=3, staged={"person_record": 39}, seconds=1.25),
        DropResult("d2", "cn_mps/suspects/broken.csv", DropState.REJECTED,
                   "broken.csv: is binary"),
        DropResult("d3", "vn_mps/wanted/w.csv", DropState.HELD, "held: 4 bad phones", rows=9),
    ]
    s.stages = [("land", 0.5), ("validate and stage", 2.0)]
    return s


@pytest.mark.parametrize(("kinds", "failing"), [
    ([], []),
    (["rejected"], ["cn_mps/suspects/broken.csv"]),
    (["held", "flagged"], ["cn_mps/suspects/s.csv", "vn_mps/wanted/w.csv"]),
])
def test_drops_a_run_can_fail_on(kinds, failing):
    assert _summary().drops_in(kinds) == failing


def test_summary_as_json():
    data = _summary().as_json()
    assert data["counts"] == {"landed": 0, "duplicates": 0, "left_in_landing": 0,
                              "staged": 1, "rejected": 1,
                              "held": 1, "rows_read": 49, "rows_read_again": 0,
                              "rows_staged": 39, "rows_quarantined": 1, "rows_held": 9,
                              "rows_rejected": 0, "rows_flagged": 3,
                              "person_records_staged": 39}
    assert [(d["name"], d["state"], d["seconds"]) for d in data["drops"]] == [
        ("cn_mps/suspects/s.csv", "staged", 1.25),
        ("cn_mps/suspects/broken.csv", "rejected", 0.0),
        ("vn_mps/wanted/w.csv", "held", 0.0)]
    assert data["stages"] == [{"stage": "land", "seconds": 0.5},
                              {"stage": "validate and stage", "seconds": 2.0}]
    json.dumps(data)  # plain data all the way down


def _figures(text: str) -> dict[str, int]:
    """The summary's table of figures: {label: number}."""
    return {label: int(n.replace(",", "")) for label, n in re.findall(
        r"^\| ([^|]+?) \| ([\d,]+) \|$", text, re.M)}


def test_rows_read_add_up_when_drops_are_held_or_rejected():
    """A held drop's 92 rows were read, but no figure said where they went, and its 28 flagged
    rows were counted as "flagged (staged ...)" beside "person records staged 0" (the steward's
    run10; run4 had a held drop beside a staged one). Rows read now equal the rows staged,
    quarantined, held and rejected; flagged counts the staged drops' rows only."""
    s = RunSummary("run-10", "/lake")
    s.drops = [
        DropResult("h1", "th_imm/repat_hold/rep_hold.csv", DropState.HELD,
                   "held for a steward: passports", rows=92, flagged=28),
        DropResult("s1", "cn_mps/fraud_reports/f.csv", DropState.STAGED, rows=41,
                   quarantined=1, flagged=2, staged={"person_record": 40}),
        DropResult("r1", "th_imm/repatriations/r.csv", DropState.REJECTED, "a reject rule",
                   rows=6, quarantined=2),
        DropResult("r2", "cn_mps/suspects/broken.csv", DropState.REJECTED, "unreadable"),
    ]
    c = s.as_json()["counts"]
    assert (c["rows_read"], c["rows_staged"], c["rows_quarantined"], c["rows_held"],
            c["rows_rejected"], c["rows_flagged"]) == (139, 40, 1, 92, 6, 2)
    assert c["rows_read"] == (c["rows_staged"] + c["rows_quarantined"] + c["rows_held"]
                              + c["rows_rejected"])
    assert c["rows_staged"] == c["person_records_staged"]
    shown = _figures(s.markdown())
    assert shown["rows read (= staged + quarantined + held + rejected)"] == 139 == (
        shown["rows staged"] + shown["rows quarantined (kept out of the drops staged)"]
        + shown["rows held (every row of the drops held)"]
        + shown["rows rejected (every row of the drops rejected)"])
    assert shown["rows flagged (staged, a value kept but not normalised)"] == 2
    assert "of them read again" not in s.markdown()  # no drop was read before
    # only the held drop, as run10: nothing staged, nothing flagged as staged
    s.drops = s.drops[:1]
    shown = _figures(s.markdown())
    assert (shown["rows read (= staged + quarantined + held + rejected)"],
            shown["rows held (every row of the drops held)"],
            shown["rows flagged (staged, a value kept but not normalised)"],
            shown["person records staged"]) == (92, 92, 0, 0)


def test_a_drop_accepted_after_a_hold_has_its_rows_counted_as_read_again(tmp_path):
    """The run that stages a drop a steward accepted reads its rows again: summed over runs,
    "rows read" counted them twice, and nothing said so. The summary now counts them as read
    again, and says which drop and why."""
    from test_severity import HOLD, VN_DROP, _land, _process, _vn_feed

    from fusionlake.lake.ledger import Ledger
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.stage import pending_drops

    store = open_store(str(tmp_path / "lake"))
    feeds = _vn_feed(tmp_path / "feeds", HOLD)
    _land(store, tmp_path, "vn_police", "arrests", "a.csv", VN_DROP)
    ledger = Ledger(store)
    runs = []
    for run_id in ("run-1", "run-2"):
        pending = pending_drops(ledger, feeds)
        s = RunSummary(run_id, store.uri, read_before=read_before(store, pending))
        s.drops = [_process(store, e, feeds, run_id) for e in pending]
        runs.append(s)
        if run_id == "run-1":
            [held] = s.drops
            assert held.state == DropState.HELD
            ledger.decide(held.drop_id, "accept", "Lan", "foreign numbers, checked by phone")
    first, second = (r.as_json()["counts"] for r in runs)
    assert (first["rows_read"], first["rows_held"], first["rows_read_again"],
            first["rows_flagged"]) == (10, 10, 0, 0)
    assert (second["rows_read"], second["rows_staged"], second["rows_read_again"],
            second["rows_flagged"]) == (10, 10, 10, 2)
    # summed over the runs, each of the drop's 10 rows is read once
    assert sum(c["rows_read"] - c["rows_read_again"] for c in (first, second)) == 10
    text = runs[1].markdown()
    assert _figures(text)["of them read again (an earlier run read them too: see the drops)"
                          ] == 10
    assert "| staged | 10 | 0 | 2 |" in text
    assert "| rows read again (accepted after a hold) |" in text
    assert runs[1].as_json()["drops"][0]["read_before"] == "accepted after a hold"


def test_a_hostile_header_quoted_by_a_reason_reaches_no_terminal_raw():
    """A drop rejected for its columns quotes the header it found, which the agency wrote: its
    escape sequences (set the terminal's title, clear the screen) reached the operator's
    terminal and the run report through the summary; found by a helper playing the data
    steward. They are shown as \\xNN, as `drops` and `report` show them; lines stay lines."""
    s = _summary()
    s.drops[1].reason = ("broken.csv lacks the column(s) manifest_id (found: "
                         "\x1b]0;pwned\x07\x1b[2Jmanifest, flight_no)")
    s.problems = ["landing/th_imm/x/\x1b[31mred.csv: misplaced"]
    text = s.markdown()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), repr(text)
    assert "\\x1b]0;pwned\\x07\\x1b[2Jmanifest" in text
    assert "\\x1b[31mred.csv" in text
    assert text.count("\n") > 20 and "| drop | file | state |" in text


def test_html_an_agency_wrote_is_shown_as_text_where_the_summary_is_rendered():
    """The summary is posted to Prefect as a markdown artifact, which its UI renders, and a
    steward may open reports/runs/*.md in a markdown viewer: a header quoted by a reason held
    markup (a script, an image whose onerror runs one) that a renderer would have made
    elements of, and our own note "landing/<agency>/<feed>/<file>" lost its parts as unknown
    tags. Rendered by CommonMark, the text reads as written and makes no element."""
    from markdown_it import MarkdownIt

    s = _summary()
    s.drops[1].reason = ("broken.csv lacks the column(s) manifest_id (found: "
                         "<img src=x onerror=alert(1)>, <script>alert(2)</script>)")
    s.notes = ["landing/x.csv is not where a delivery goes (landing/<agency>/<feed>/<file>)",
               "<!-- hidden --> and <https://example.org> and <?php ?>"]
    html = MarkdownIt("commonmark").enable("table").render(s.markdown())
    assert "<img" not in html and "<script" not in html and "<!--" not in html, html
    assert "<a href" not in html and "<?php" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "landing/&lt;agency&gt;/&lt;feed&gt;/&lt;file&gt;" in html
    assert "<td>" in html  # the tables are still tables


@pytest.mark.parametrize("lake", ["/srv/lakes/task force", "s3://fusion/lake"])
def test_the_commands_the_summary_suggests_name_its_lake(lake):
    """Run as printed, a suggested command reads the lake the run wrote, not ./lakehouse or
    $FUSIONLAKE_LAKE (the summary is read later, from another folder or by someone else)."""
    s = _summary()
    s.lake, s.marts = lake, {"all": "v1"}
    s.data_docs = f"{lake}/reports/data_docs/index.html"
    text = s.markdown()
    quoted = "'/srv/lakes/task force'" if " " in lake else lake
    assert f'`fusionlake sql "select * from entity limit 10" --lake {quoted}`' in text
    if lake.startswith("s3://"):
        assert f"`fusionlake docs --serve 8000 --lake {quoted}`" in text
        assert f"`fusionlake docs --sync DIR --lake {quoted}`" in text


@pytest.mark.slow
def test_run_piped_prints_plain_markdown_json_and_fails_on_request(prefect_harness, tmp_path,
                                                                   capsys):
    from fusionlake.cli import main
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver

    lake = str(tmp_path / "lake")
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\x00\x01garbage\x00\n")
    deliver(open_store(lake), "cn_mps", "suspects", [broken])
    capsys.readouterr()
    assert main(["run", "--lake", lake, "--fail-on", "held,rejected", "--format", "json"]) == 1
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert (data["counts"]["rejected"], data["drops"][0]["name"]) == (
        1, "cn_mps/suspects/broken.csv")
    assert err.endswith("fusionlake run: 1 drop(s) held/rejected: cn_mps/suspects/broken.csv\n")
    # stderr is no terminal here, as in a scheduled run: one progress line per stage
    assert re.search(r"validate\+stage: done in [0-9.]+ s \(1 drops, 0 rows, 0 quarantined, "
                     r"0 flagged\)", err), err
    # nothing new now: exit 0 even with --fail-on, and the markdown is printed as written
    assert main(["run", "--lake", lake, "--fail-on", "rejected"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# fusionlake run ")
    assert "Nothing new: no deliveries, no pending drops, marts unchanged." in out
    assert "| drops rejected | 0 |" in out  # a markdown table row, not a reflowed box
