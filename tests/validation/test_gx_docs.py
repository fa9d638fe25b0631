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
    n = 10
    frame = pl.DataFrame({c: [None] * n for c in SUSPECTS.columns},
                         schema={c: pl.String for c in SUSPECTS.columns}).with_columns(
        pl.format("XS{}", pl.int_range(n)).alias("编号"),
        pl.lit("王小明").alias("姓名"),
        # half the ids fail MOD 11-2: more than the suite's mostly allows
        pl.Series("公民身份号码", ["110105198001010016", "110105198001010011"] * 5),
        pl.int_range(1, n + 1, dtype=pl.Int64).alias("source_row"),
    )
    outcome = validate_drop(frame, SUSPECTS, "drop-failing-ids")
    # bad values never reject a drop: the drop goes on, the expectation fails in Data Docs
    assert outcome.accepted and outcome.flagged == 5
    assert not next(r for r in outcome.gx_result_json["results"]
                    if r["expectation_config"]["type"]
                    == "expect_column_values_to_be_valid_identifier")["success"]
    out = tmp_path_factory.mktemp("docs")
    index = build_data_docs([("drop-failing-ids", outcome.gx_result_json)], out)
    return out, index


def test_no_page_loads_anything_from_the_network(site):
    out, _ = site
    pages = sorted(out.rglob("*.html"))
    assert [p.relative_to(out).as_posix() for p in pages] == [
        "index.html", "validations/cn_mps.suspects/drop-failing-ids.html"]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert _EXTERNAL.findall(text) == [], page
    # the local copies the validation page links to exist in the site
    page = pages[1].read_text(encoding="utf-8")
    local = re.findall(r'(?:src|href)="(\.\./\.\./static/[^"]+)"', page)
    assert len(local) >= 10
    for rel in local:
        assert (pages[1].parent / rel).resolve().is_file(), rel


def test_index_lists_the_failed_drop(site):
    _, index = site
    text = index.read_text(encoding="utf-8")
    assert "drop-failing-ids" in text
    assert "expect_column_values_to_be_valid_identifier(公民身份号码)" in text


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
    # GX renders the custom expectation by name, with the failing column and its values
    assert "expect_column_values_to_be_valid_identifier" in dom
    assert "公民身份号码" in dom
    assert "110105198001010011" in dom
    # the local jQuery and bootstrap-table ran: they wrap GX's tables in their containers
    assert "fixed-table-container" in dom


def test_every_vendored_asset_is_in_the_repository():
    from expectations.assets import ASSETS, VENDOR

    missing = [a.local for a in ASSETS if not (VENDOR / a.local).is_file()]
    assert not missing, f"missing {missing}: run `python -m expectations.assets` and commit them"
