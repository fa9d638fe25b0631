"""The agencies that join later, onboarded as an engineer would: two feed files each, no Python.

Laos' police send detainees with Lao names (and the Latin spelling of some), Buddhist Era dates
and phone numbers in Lao digits; Vietnam's ministry sends arrests in Windows' Vietnamese code page
(read with ``encoding: detect``), whose tone marks come decomposed, and a delimiter ending
every data line, one of them with a comma in a name; beside them comes a file that is no text. A
hostile walk of 2026-12-07 found each of these broke
something: a Lao date rejected the whole drop, the Vietnamese file was read as Chinese, every
woman's sex was lost, each line was quarantined, and Lao people had no name in the marts. One
person is in both files (the same passport): the lake must match her across the two agencies.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cp1258

from fusionlake.lake.ledger import Ledger
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import open_store
from fusionlake.pipeline.land import deliver
from fusionlake.pipeline.marts import open_latest
from fusionlake.pipeline.run import run

pytestmark = pytest.mark.slow

LAO_FEED = """\
agency: la_police
feed: detainees
format: csv
source_key: id
record: person
role: detainee
releasable_to: [la_police]
defaults: {nationality: LA, phone_region: LA}
columns:
  id:       {to: source_key, required: true, unique: true}
  name:     {to: person.name, name_order: given_first, required: true}
  name_en:  {to: person.name, name_role: latin, name_order: given_first}
  dob:      {to: person.birth_date, calendar: buddhist, formats: ["%d/%m/%Y"]}
  phone:    {to: phone}
  passport: {to: identifier, kind: passport, issuing_country_from: person.nationality}
"""

VN_FEED = """\
agency: vn_mps
feed: arrests
format: csv
encoding: detect
source_key: STT
record: person
role: suspect
releasable_to: [vn_mps]
defaults: {nationality: VN, phone_region: VN}
columns:
  STT:       {to: source_key, required: true, unique: true}
  Ho va ten: {to: person.name, name_order: family_first, required: true}
  Gioi tinh: {to: person.sex, values: {Nam: M, "Nữ": F}}
  Ngay sinh: {to: person.birth_date, formats: ["%d/%m/%Y"]}
  Ho chieu:  {to: identifier, kind: passport, issuing_country: LA}
"""

# (id, name in Lao, its Latin spelling, born (BE, Lao digits), phone (Lao digits), passport)
LAO_ROWS = [
    ("LD-1", "ສົມພອນ ແກ້ວມະນີ", "Somphone Keomany", "໑໕/໐໕/໒໕໒໘", "໐໒໐ ໙໙໙໙ ໘໘໘໘", "P0123456"),
    ("LD-2", "ຄຳລາ ສີວົງ", "", "15/05/2530", "020 5555 1234", "P0234567"),
    ("LD-3", "ທອງດີ ກັນຍາ", "", "01/01/2535", "", "P0345678"),
]
# the same woman as LD-1 in Vietnamese records, and two others
VN_ROWS = [
    ("VG-1", "Keomany Somphone", "Nữ", "15/05/1985", "P0123456"),
    ("VG-2", "Bùi Lâm", "Nam", "02/09/1990", ""),
    ("VG-3", "Nguyễn Thị Hoa", "Nữ", "12/12/1992", ""),
    # a name with an unquoted comma: one field too many, the values shifted: quarantined
    ("VG-4", "Trần, Văn Bình", "Nam", "01/01/1980", ""),
]


def _files(folder: Path) -> tuple[Path, Path]:
    lao = folder / "detainees-2026-12.csv"
    lao.write_text("id,name,name_en,dob,phone,passport\n" + "".join(
        ",".join(row) + "\n" for row in LAO_ROWS), encoding="utf-8")
    vn = folder / "arrests.csv"
    # CP1258 writes a tone as a combining mark: Nữ arrives decomposed (ư, then a tilde), and
    # must still meet the feed's values map
    lines = ["STT,Ho va ten,Gioi tinh,Ngay sinh,Ho chieu"] + [
        ",".join(row) + "," for row in VN_ROWS]  # and a delimiter ending each data line
    vn.write_bytes(cp1258("\r\n".join(lines) + "\r\n"))
    return lao, vn


def test_laos_and_vietnam_are_onboarded_and_their_shared_person_is_matched(
        tmp_path, monkeypatch):
    feeds = tmp_path / "feeds"
    (feeds / "la_police").mkdir(parents=True)
    (feeds / "vn_mps").mkdir(parents=True)
    (feeds / "la_police" / "detainees.yaml").write_text(LAO_FEED, encoding="utf-8")
    (feeds / "vn_mps" / "arrests.yaml").write_text(VN_FEED, encoding="utf-8")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(feeds))
    lao, vn = _files(tmp_path)
    broken = tmp_path / "arrests-broken.csv"  # beside them, a file that is no text at all
    broken.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50 + b"\n")  # whole: ends a line
    lake = str(tmp_path / "lake")
    store = open_store(lake)
    deliver(store, "la_police", "detainees", [lao])
    deliver(store, "vn_mps", "arrests", [vn, broken])

    summary = run(Settings(lake=lake))
    states = {e.file_name: str(e.state) for e in Ledger(store).entries()}
    assert states == {lao.name: "published", vn.name: "published", broken.name: "rejected"}
    drops = {d.name.rsplit("/", 1)[-1]: d for d in summary.drops}
    assert {n: (d.rows, d.quarantined) for n, d in drops.items() if n != broken.name} == {
        lao.name: (3, 0), vn.name: (4, 1)}
    assert drops[broken.name].reason.startswith(f"{broken.name}: is binary")
    con = open_latest(store, "all")
    try:
        [(line, reason)] = con.execute(
            "SELECT line, reason FROM quarantine WHERE drop_id = "
            "(SELECT drop_id FROM drop_ledger WHERE file_name = ?)", [vn.name]).fetchall()
    finally:
        con.close()
    assert (line, reason) == (5, "line 5: 7 fields, the header has 5; check the delimiter ',' "
                                 "and the quoting")

    con = open_latest(store, "all")
    try:
        records = {r[0]: r[1:] for r in con.execute("""
            SELECT source_key, name_script, name_latin, birth_date, sex FROM entity_record
            ORDER BY 1""").fetchall()}
        phones = dict(con.execute(
            "SELECT source_key, e164 FROM entity_phone WHERE e164 IS NOT NULL").fetchall())
        shown = {r[0] for r in con.execute("SELECT display_name FROM entity").fetchall()}
        [(agencies,)] = con.execute("""
            SELECT e.agencies FROM entity AS e JOIN entity_record AS r USING (entity_id)
            WHERE r.source_key = 'LD-1'""").fetchall()
    finally:
        con.close()
    # Lao names romanised, Lao-digit Buddhist Era dates read, no one without a name
    assert records["LD-1"][:2] == ("Lao", "KAEOMANI SOMPHON")
    assert records["LD-2"][:2] == ("Lao", "SIWONG KHAMLA")
    assert str(records["LD-1"][2]) == "1985-05-15"
    assert str(records["LD-3"][2]) == "1992-01-01"
    assert None not in shown
    assert phones == {"LD-1": "+8562099998888", "LD-2": "+8562055551234"}
    # Vietnamese read as Vietnamese, its women's sex kept
    assert records["VG-2"][1] == "BUI LAM"
    assert records["VG-3"][1:] == ("NGUYEN THI HOA", records["VG-3"][2], "F")
    assert records["VG-1"][3] == "F"
    # the woman in both files is one person of two agencies
    assert sorted(agencies) == ["la_police", "vn_mps"]


def test_a_feed_with_a_typo_in_releasable_to_holds_back_its_drops_and_the_run_goes_on(
        tmp_path, monkeypatch):
    """Vietnam's feed releases to ``la_polce`` (for la_police): were it loaded, its rows would be
    withheld from Laos and a mart made for nobody. The whole run, beside a good feed: the Lao
    drop is published, the Vietnamese one is rejected with the feed file's own error (not "no
    feed definition": the engineer has written one), no mart exists for the typo, and once the
    file is mended the next run stages the drop with nothing sent again."""
    from fusionlake.pipeline import marts

    feeds = tmp_path / "feeds"
    (feeds / "la_police").mkdir(parents=True)
    (feeds / "vn_mps").mkdir(parents=True)
    (feeds / "la_police" / "detainees.yaml").write_text(LAO_FEED, encoding="utf-8")
    vn_feed = feeds / "vn_mps" / "arrests.yaml"
    vn_feed.write_text(VN_FEED.replace("releasable_to: [vn_mps]",
                                       "releasable_to: [vn_mps, la_polce]"), encoding="utf-8")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(feeds))
    lao, vn = _files(tmp_path)
    lake = str(tmp_path / "lake")
    store = open_store(lake)
    deliver(store, "la_police", "detainees", [lao])
    deliver(store, "vn_mps", "arrests", [vn])

    summary = run(Settings(lake=lake, drop_workers=0))
    entries = {e.file_name: e for e in Ledger(store).entries()}
    assert entries[lao.name].state == "published"
    assert entries[vn.name].state == "rejected"
    reason = entries[vn.name].reason
    assert reason.startswith(f"the feed definition of vn_mps/arrests does not load: {vn_feed}: "
                             "key 'releasable_to': names 'la_polce', which is no agency"), reason
    assert "no feed definition" not in reason
    assert any(p.startswith(f"feed definition error: {vn_feed}") for p in summary.problems)
    assert marts.latest(store, "la_polce") is None
    published = {k.split("/")[1] for k in store.list("marts/") if k.count("/") > 1}
    assert {"all", "la_police"} <= published and "la_polce" not in published

    vn_feed.write_text(VN_FEED.replace("releasable_to: [vn_mps]",
                                       "releasable_to: [vn_mps, la_police]"), encoding="utf-8")
    summary = run(Settings(lake=lake, drop_workers=0))
    assert summary.problems == []
    entries = {e.file_name: e for e in Ledger(store).entries()}
    assert entries[vn.name].state == "published"
    con = open_latest(store, "la_police")
    try:
        [(seen,)] = con.execute(
            "SELECT count(*) FROM entity_record WHERE agency = 'vn_mps'").fetchall()
    finally:
        con.close()
    assert seen == 3  # the four rows but the quarantined one, now released to Laos too


def test_an_agency_that_only_receives_has_a_mart_and_one_that_left_is_named(
        tmp_path, monkeypatch):
    """Cambodia's immigration receives rows (an agreement of its own, no feed): it had no mart
    until some row named it. Laos leaves (its feed folder removed): its mart went on being
    served with no word in any run (a hostile walk of 2026-12-07); now each run that publishes
    says so, and how to retire it."""
    from fusionlake.pipeline import marts

    feeds = tmp_path / "feeds"
    (feeds / "la_police").mkdir(parents=True)
    (feeds / "la_police" / "detainees.yaml").write_text(LAO_FEED, encoding="utf-8")
    (feeds / "kh_imm").mkdir()
    (feeds / "kh_imm" / "sharing.yaml").write_text("agency: kh_imm\n", encoding="utf-8")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(feeds))
    lao, _vn = _files(tmp_path)
    lake = str(tmp_path / "lake")
    store = open_store(lake)
    deliver(store, "la_police", "detainees", [lao])
    summary = run(Settings(lake=lake, drop_workers=0))
    assert {"kh_imm", "la_police"} <= set(summary.marts)
    con = open_latest(store, "kh_imm")
    try:
        assert con.execute("SELECT count(*) FROM entity_record").fetchall() == [(0,)]
    finally:
        con.close()

    import shutil

    shutil.rmtree(feeds / "la_police")
    summary = run(Settings(lake=lake, drop_workers=0, full=True))  # a run that publishes
    assert marts.latest(store, "la_police") is not None
    assert [n for n in summary.notes if n.startswith("the mart of la_police")] == [
        "the mart of la_police is still served, but la_police has no feed and no sharing "
        "agreement any more: retire it by removing marts/la_police/ from the lake"], summary.notes
