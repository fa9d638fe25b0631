"""Data Docs: built offline (no external asset URLs) and shown by a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import polars as pl
import pytest

from expectations.docs import build_data_docs
from expectations.runner import validate_drop
from fusionlake.lake.feeds import load_feeds

SUSPECTS = load_feeds().feeds["cn_mps/suspects"]
_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*['"]?https?://""",
                       re.IGNORECASE)
_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site with one drop whose CN ID column fails its check-digit expectation."""
    n = 50  # 25 bad ids: more than the 20 values a stored result keeps as its sample
    frame = pl.DataFrame({c: [None] * n for c in SUSPECTS.columns},
                         schema={c: pl.String for c in SUSPECTS.columns}).with_columns(
        pl.format("XS{}", pl.int_range(n)).alias("编号"),
        pl.lit("王小明").alias("姓名"),
        # half the ids fail MOD 11-2: more than the suite's mostly allows
        pl.Series("公民身份号码", ["110105198001010016", "110105198001010011"] * (n // 2)),
        pl.int_range(1, n + 1, dtype=pl.Int64).alias("source_row"),
    )
    outcome = validate_drop(frame, SUSPECTS, "drop-failing-ids")
    # bad values never reject a drop: the drop goes on, the expectation fails in Data Docs
    assert outcome.accepted and outcome.flagged == 25
    assert not next(r for r in outcome.gx_result_json["results"]
                    if r["expectation_config"]["type"]
                    == "expect_column_values_to_be_valid_identifier")["success"]
    out = tmp_path_factory.mktemp("docs")
    # the index's counts and quarantine rows, as fusionlake.pipeline.report gives them
    drop = {"drop_id": "drop-failing-ids", "agency": "cn_mps", "feed": "suspects",
            "file": "suspects.csv", "received": "2026-12-01 08:00:00", "state": "staged",
            "reason": None, "rows": 51, "staged": 50, "flagged": 25, "quarantined": 1,
            "held": False, "expectations": 27, "passed": 26,
            "findings": [{"expectation": "expect_column_values_to_be_valid_identifier",
                          "check": "valid_identifier", "column": "公民身份号码",
                          "success": False, "unexpected_count": 25}]}
    quarantine = {"drop-failing-ids": [
        {"line": 12, "column": "编号", "value": "<img src=x onerror=alert(1)>",
         "reason": "the key repeats an earlier row"}]}
    index = build_data_docs([("drop-failing-ids", outcome.gx_result_json)], out,
                            drops=[drop], quarantine=quarantine)
    return out, index


def test_no_page_loads_anything_from_the_network(site):
    out, _ = site
    pages = sorted(out.rglob("*.html"))
    assert [p.relative_to(out).as_posix() for p in pages] == [
        "index.html", "quarantine/cn_mps.suspects/drop-failing-ids.html",
        "validations/cn_mps.suspects/drop-failing-ids.html"]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert _EXTERNAL.findall(text) == [], page
    # the local copies the validation page links to exist in the site
    page = pages[2].read_text(encoding="utf-8")
    local = re.findall(r'(?:src|href)="(\.\./\.\./static/[^"]+)"', page)
    assert len(local) >= 10
    for rel in local:
        assert (pages[2].parent / rel).resolve().is_file(), rel


def test_index_lists_the_failed_drop(site):
    _, index = site
    text = index.read_text(encoding="utf-8")
    assert "drop-failing-ids" in text
    assert "FAILED valid_identifier (公民身份号码): 25 rows" in _text(text)
    assert '<span title="expect_column_values_to_be_valid_identifier">' in text
    assert re.search(r'<td class="flagged">25</td><td class="quarantined"><a class="quarantine" '
                     r'href="quarantine/cn_mps.suspects/drop-failing-ids.html">1</a></td>', text)


def test_quarantine_page_lists_line_column_escaped_value_and_reason(site):
    out, _ = site
    page = (out / "quarantine/cn_mps.suspects/drop-failing-ids.html").read_text("utf-8")
    assert ("<tr><td>12</td><td>编号</td><td><code>&lt;img src=x onerror=alert(1)&gt;</code>"
            "</td><td>the key repeats an earlier row</td></tr>") in page
    assert "<img" not in page


def _validation_page(out) -> str:
    return (out / "validations/cn_mps.suspects/drop-failing-ids.html").read_text("utf-8")


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_custom_expectations_read_as_sentences(site):
    text = _text(_validation_page(site[0]))
    assert "(**{" not in text  # GX's fallback for an expectation without a renderer
    assert ("values must be valid cn resident id numbers (check digit and format), "
            "at least 90 % of the time.") in text
    assert ("values must be real dates written as chinese or iso in the gregorian "
            "calendar, from 1900-01-01 to today , at least 95 % of the time.") in text
    assert "values must not be spreadsheet formulas" in text


def test_the_value_sample_is_labelled_with_the_real_count(site):
    page = _validation_page(site[0])
    text = _text(page)
    # 25 bad ids, one distinct value, 20 kept: the table is a sample, the real count beside it
    assert ("Sample of the unexpected values Count in the sample source_row 110105198001010011 "
            "20 ") in text
    assert "25 unexpected of 50 rows (50%)" in text
    assert "Sampled Unexpected Values" not in text


def test_no_gx_branding_or_dead_links(site):
    page = _validation_page(site[0])
    for gone in ("__none__", "Data asset: None", "newsletter", "<img", "<footer",
                 'href="#"', "ge-walkthrough-modal\").modal"):
        assert gone not in page, gone
    assert "Data asset: cn_mps/suspects/suspects.csv" in _text(page)
    assert "Run Name drop-failing-ids" in _text(page)


def _dump_dom(url: str, profile) -> str:
    cmd = [_CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           f"--user-data-dir={profile}", "--virtual-time-budget=3000", "--dump-dom", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(_CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_chromium_shows_the_failing_expectation(site, tmp_path):
    out, index = site
    dom = _dump_dom(index.as_uri(), tmp_path / "profile-index")
    assert "drop-failing-ids" in dom
    assert "failed" in dom
    page = out / "validations" / "cn_mps.suspects" / "drop-failing-ids.html"
    dom = _dump_dom(page.as_uri(), tmp_path / "profile-page")
    # GX renders the custom expectation as a sentence, with the failing column and its values
    assert "values must be valid cn resident id numbers" in _text(dom)
    assert "公民身份号码" in dom
    assert "110105198001010011" in dom
    # the local jQuery and bootstrap-table ran: they wrap GX's tables in their containers
    assert "fixed-table-container" in dom


@pytest.mark.skipif(_CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_chromium_shows_quarantine_counts_rows_and_readable_checks(site, tmp_path):
    out, index = site
    dom = _dump_dom(index.as_uri(), tmp_path / "profile-index")
    assert re.search(r'<td class="quarantined"><a class="quarantine" href="quarantine/'
                     r'cn_mps.suspects/drop-failing-ids.html">1</a></td>', dom)
    assert '<td class="flagged">25</td>' in dom
    page = out / "quarantine" / "cn_mps.suspects" / "drop-failing-ids.html"
    dom = _dump_dom(page.as_uri(), tmp_path / "profile-quarantine")
    # the planted markup stays text: the browser made no img element of it
    assert "<code>&lt;img src=x onerror=alert(1)&gt;</code>" in dom
    assert "<img" not in dom
    dom = _dump_dom((out / "validations/cn_mps.suspects/drop-failing-ids.html").as_uri(),
                    tmp_path / "profile-page")
    assert "values must be valid cn resident id numbers (check digit and format)" in _text(dom)
    assert "(**{" not in dom


def test_every_vendored_asset_is_in_the_repository():
    from expectations.assets import ASSETS, VENDOR

    missing = [a.local for a in ASSETS if not (VENDOR / a.local).is_file()]
    assert not missing, f"missing {missing}: run `python -m expectations.assets` and commit them"
