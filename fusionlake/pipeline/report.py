"""The stewards' report: what became of each drop, read back from the lake.

One :class:`DropReport` per drop in the ledger (duplicates aside), including drops rejected
while being read, which have no validation result: their row says so, with the reader's reason.
The counts come from the objects a run wrote (validation/, quarantine/, staged/), so ``fusionlake
report`` and the Data Docs index show the same figures without re-running anything.

Counts are of source rows: ``rows`` every row the drop held (readable or not), ``quarantined``
the rows kept out (with their line in the file), ``flagged`` the rows staged with a value kept
but not normalised, ``staged`` the person records written. The expectations listed are those that
failed or found bad values within their ``mostly``, with GX's real unexpected count (the stored
GX result keeps only a sample of the values), the rows that count is of (``checked``: GX's
percentages are of the rows with a value, so they vary by column), and what became of those rows
(``quarantined``, ``flagged``); ``text`` says it in a line (:func:`finding_text`). For a key that
must be unique GX counts every row that shares a value, the first included, while only the later
copies are quarantined: "2 rows share a value (5.1% of 39 with a value); 1 quarantined (the
later copy)".
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from fusionlake.lake import layout, zones
from fusionlake.lake.feeds import FeedSet
from fusionlake.lake.ledger import DropEntry, DropState, Ledger
from fusionlake.lake.store import NotFound, ObjectStore

#: The kinds of drop ``fusionlake run --fail-on`` can fail a run on (RunSummary.drops_in).
FAIL_ON = ("rejected", "held", "flagged")

#: Reader problems carry expectations of this prefix (fusionlake.pipeline.read).
_READ_PREFIX = "read_"


@dataclass
class DropReport:
    """One drop as a steward sees it; None where the drop never got that far."""

    drop_id: str
    agency: str
    feed: str
    file: str
    received: str
    state: str
    reason: str | None
    rows: int | None = None
    staged: int | None = None
    flagged: int | None = None
    quarantined: int | None = None
    held: bool = False
    expectations: int | None = None
    passed: int | None = None
    #: records of the drop a later drop of its feed replaced (``supersede: by_source_key``):
    #: staged, and no longer in the marts (None when not counted)
    superseded: int | None = None
    #: expectations that failed or found bad values: expectation, check (its short name),
    #: column, success, unexpected_count (GX's real count), unexpected_percent, mostly, details,
    #: checked (the rows unexpected_percent is of), quarantined and flagged (the rows this
    #: expectation kept out or flagged), text (:func:`finding_text`)
    findings: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[dict]:
        return [f for f in self.findings if not f["success"]]

    def as_json(self) -> dict:
        out = asdict(self)
        out["failed"] = self.failed
        return out


def check_name(expectation: str) -> str:
    """``expect_column_values_to_be_valid_identifier`` -> ``valid_identifier``: for tables."""
    for prefix in ("expect_column_values_to_", "expect_column_", "expect_", "be_"):
        expectation = expectation.removeprefix(prefix)
    return expectation


#: GX counts every row of a repeated value as unexpected; the first of each goes on.
_UNIQUE = "expect_column_values_to_be_unique"


def rows_text(count: int, checked: int | None = None, percent: float | None = None,
              with_value: bool = False) -> str:
    """``1 row of 9 (11.1%)``: a count with what it is of, in words that fit the number.

    ``with_value``: the count is of the rows that have a value (GX leaves empty cells out of
    most checks, so the rows a percentage is of vary by column).

    >>> rows_text(1, 9, 100 / 9)
    '1 row of 9 (11.1%)'
    >>> rows_text(2, 8, 25.0, with_value=True)
    '2 rows of 8 with a value (25.0%)'
    >>> rows_text(3)
    '3 rows'
    """
    out = f"{count:,} row{'' if count == 1 else 's'}"
    if checked is not None:
        out += f" of {checked:,}{' with a value' if with_value else ''}"
    if percent is not None:
        out += f" ({percent:.1f}%)"
    return out


def finding_text(f: dict) -> str:
    """One finding of :attr:`DropReport.findings` as a steward reads it: the check, its real
    count and what that is of, and what became of those rows; for a unique key, that the rows
    counted share values and only the later copies were quarantined.

    >>> finding_text({"check": "unique", "column": "manifest_id", "success": False,
    ...               "expectation": _UNIQUE, "unexpected_count": 2, "checked": 8,
    ...               "with_value": False, "unexpected_percent": 25.0, "quarantined": 1,
    ...               "flagged": 0, "details": None})
    'FAILED unique(manifest_id): 2 rows share a value (25.0% of 8); 1 quarantined (the later copy)'
    """
    failed = "" if f["success"] else "FAILED "
    if f["column"] is None and f.get("unexpected_count") is None:  # a table's check
        return f"{failed}{f['check']}: {f.get('details') or 'failed'}" if failed else f["check"]
    count, checked = f.get("unexpected_count") or 0, f.get("checked")
    percent = f.get("unexpected_percent") if checked else None
    quarantined, flagged = f.get("quarantined") or 0, f.get("flagged") or 0
    head = f"{failed}{f['check']}({f['column'] or ''}): "
    if f["expectation"] == _UNIQUE and count:
        head += rows_text(count) + " share a value"
        if percent is not None:
            head += (f" ({percent:.1f}% of {checked:,}"
                     f"{' with a value' if f.get('with_value') else ''})")
    else:
        head += rows_text(count, checked, percent, bool(f.get("with_value")))
    parts = [head]
    if quarantined:
        parts.append(f"{quarantined:,} quarantined" + (
            f" (the later cop{'y' if quarantined == 1 else 'ies'})"
            if f["expectation"] == _UNIQUE else ""))
    if flagged:
        parts.append(f"{flagged:,} flagged")
    return "; ".join(parts)


def _count_rows(data: bytes) -> int:
    return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows


def _frame(store: ObjectStore, key: str) -> pl.DataFrame | None:
    try:
        return zones.read_frame(store, key)
    except NotFound:
        return None


def _report(store: ObjectStore, entry: DropEntry) -> DropReport:
    rep = DropReport(entry.drop_id, entry.agency, entry.feed, entry.file_name,
                     entry.received_at[:19].replace("T", " "), str(entry.state), entry.reason,
                     held=entry.state == DropState.HELD)
    a, f, d = entry.agency, entry.feed, entry.drop_id
    results = _frame(store, layout.validation_results_key(a, f, d))
    if results is None:  # never validated: rejected while being read, or not yet run
        return rep
    quarantine = _frame(store, layout.quarantine_key(a, f, d))
    flags = _frame(store, layout.flags_key(a, f, d))
    rep.quarantined = (quarantine["source_row"].n_unique()
                       if quarantine is not None and quarantine.height else 0)
    rep.flagged = flags["source_row"].n_unique() if flags is not None and flags.height else 0
    unreadable = 0
    if quarantine is not None and quarantine.height and "expectation" in quarantine.columns:
        unreadable = quarantine.filter(pl.col("expectation").str.starts_with(_READ_PREFIX))[
            "source_row"].n_unique()
    gx = _gx_result(store, a, f, d)
    rep.rows = _validated_rows(gx) + unreadable
    try:
        rep.staged = _count_rows(store.get(layout.staged_key("person_record", a, f, d)))
    except NotFound:
        rep.staged = 0
    # the reader's checks (read_*) count as the expectations do: validation_result has both
    rep.expectations, rep.passed = results.height, int(results["success"].sum())
    found = results.filter(~pl.col("success") | (pl.col("unexpected_count").fill_null(0) > 0))
    gx_counts = _gx_counts(gx)
    rep.findings = []
    for r in found.iter_rows(named=True):
        exp, column = r["expectation"], r["column"]
        if exp.startswith(_READ_PREFIX):  # the reader's: of every row of the file
            checked, missing = rep.rows, 0
        else:
            checked, missing = gx_counts.get((exp, column), (None, 0))
        finding = {
            "expectation": exp, "check": check_name(exp), "column": column,
            "success": r["success"], "unexpected_count": r["unexpected_count"],
            "unexpected_percent": r["unexpected_percent"], "mostly": r["mostly"],
            "details": r["details"], "checked": checked, "with_value": missing > 0,
            "quarantined": _rows_by(quarantine, exp, column),
            "flagged": _rows_by(flags, exp, column)}
        finding["text"] = finding_text(finding)
        rep.findings.append(finding)
    return rep


def _rows_by(frame: pl.DataFrame | None, expectation: str, column: str | None) -> int:
    """The rows of a quarantine or flags frame that ``expectation`` on ``column`` put there."""
    if frame is None or not frame.height or "expectation" not in frame.columns:
        return 0
    mine = pl.col("expectation") == expectation
    if "column" in frame.columns:
        mine &= (pl.col("column").is_null() if column is None
                 else pl.col("column") == column)
    return frame.filter(mine)["source_row"].n_unique()


def _gx_result(store: ObjectStore, agency: str, feed: str, drop_id: str) -> dict:
    """The drop's stored GX result; empty when the drop was rejected before GX ran."""
    try:
        return json.loads(store.get(layout.gx_result_key(agency, feed, drop_id)))
    except NotFound:
        return {}


def _gx_counts(gx: dict) -> dict[tuple[str, str | None], tuple[int, int]]:
    """(expectation, column) -> (the rows its unexpected_percent is of, the empty cells GX left
    out of them), from GX's element_count and missing_count."""
    out = {}
    for r in gx.get("results") or []:
        cfg, res = r.get("expectation_config") or {}, r.get("result") or {}
        total = res.get("element_count")
        if not isinstance(total, int):
            continue
        missing = res.get("missing_count") or 0
        out[(cfg.get("type"), (cfg.get("kwargs") or {}).get("column"))] = (total - missing,
                                                                          missing)
    return out


def _validated_rows(gx: dict) -> int:
    """The rows GX saw (its element_count), 0 when the drop was rejected before GX ran."""
    counts = [(r.get("result") or {}).get("element_count") for r in gx.get("results") or []]
    counts = [c for c in counts if isinstance(c, int)]
    return max(counts) if counts else 0


def drop_reports(store: ObjectStore, feedset: FeedSet | None = None) -> list[DropReport]:
    """Every drop of the ledger but duplicates, oldest first; given the feeds, with the records
    of each that a later drop superseded (:func:`superseded_counts`)."""
    ledger = Ledger(store)
    entries = [e for e in ledger.entries() if e.state != DropState.DUPLICATE]
    reports = [_report(store, e) for e in sorted(entries, key=lambda e: e.received_at)]
    if feedset is not None:
        counts = superseded_counts(store, ledger, feedset)
        for r in reports:
            if r.staged is not None:
                r.superseded = counts.get(r.drop_id, 0)
    return reports


def superseded_counts(store: ObjectStore, ledger: Ledger, feedset: FeedSet) -> dict[str, int]:
    """drop id -> its staged records that a later drop of the feed replaced, by the rule the
    runs apply (fusionlake.pipeline.resolve): the report counted them staged while the marts
    no longer held them, and nothing said why."""
    from fusionlake.pipeline.resolve import superseded_records

    with tempfile.TemporaryDirectory(prefix="fusionlake-report-") as tmp:
        ids = superseded_records(store, ledger, feedset, Path(tmp))
    if not ids.len():
        return {}
    counts = ids.str.split(":").list.first().value_counts()
    return dict(zip(counts[ids.name].to_list(), counts["count"].to_list(), strict=True))


def quarantine_rows(store: ObjectStore, agency: str, feed: str, drop_id: str) -> pl.DataFrame:
    """A drop's quarantined rows as a steward reads them: line, column, value and reason.

    ``value`` is the cell the expectation refused, or the raw line when the reader could not
    split it into fields (column is then empty).
    """
    out_schema = {"line": pl.Int64, "column": pl.String, "value": pl.String,
                  "reason": pl.String}
    frame = _frame(store, layout.quarantine_key(agency, feed, drop_id))
    if frame is None or frame.is_empty():
        return pl.DataFrame(schema=out_schema)
    if "line" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.Int64).alias("line"))
    if "raw_line" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("raw_line"))
    columns = [c for c in frame["column"].drop_nulls().unique().to_list() if c in frame.columns]
    value = pl.col("raw_line")
    for c in columns:  # Python per distinct column name, the values stay vectorised
        value = pl.when(pl.col("column") == c).then(pl.col(c).cast(pl.String)).otherwise(value)
    return frame.select(pl.col("line").cast(pl.Int64), pl.col("column").cast(pl.String),
                        value.alias("value"), pl.col("reason").cast(pl.String)).cast(out_schema)


__all__ = ["FAIL_ON", "DropReport", "check_name", "drop_reports", "finding_text",
           "quarantine_rows", "rows_text"]
