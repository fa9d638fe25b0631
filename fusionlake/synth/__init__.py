"""Synthetic agency drops about people tied to the scam compounds near Myawaddy (issue #3).

Public surface: :func:`generate` (what ``fusionlake generate`` calls), :func:`generate_follow_up`
(``fusionlake generate --follow-up ROWS``: one later, small drop for the same scenario) and the
planted-defect rates in :mod:`fusionlake.synth.params`.

A population is drawn once (roles, nationalities, names in their scripts, identifiers, phones),
then each agency feed selects the people that agency saw and disguises them the way that agency
writes: scripts and spellings, calendars, encodings, typos, missing and broken fields. Everything
is drawn from one ``numpy.random.Generator(PCG64(seed))`` in a fixed order and written without
timestamps, so the same people and seed give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from fusionlake.synth import _feeds, _follow_up, _population, _write
from fusionlake.synth.params import Params

#: feed name -> file name inside out/<agency>/<feed>/
FILES = {
    "cn_mps/suspects": "suspects.csv",
    "cn_mps/fraud_reports": "fraud_reports.csv",
    "th_imm/detentions": "detentions.xlsx",
    "th_imm/repatriations": "repatriations.csv",
    "mm_police/detainees": "detainees.jsonl",
}
#: feed name -> its key column (truth.csv's source_key is this column's value)
KEYS = {
    "cn_mps/suspects": "编号",
    "cn_mps/fraud_reports": "报案编号",
    "th_imm/detentions": "ลำดับที่",
    "th_imm/repatriations": "manifest_id",
    "mm_police/detainees": "case_no",
}


def _write_feed(name: str, frame: pl.DataFrame, out: Path, malformed: int = 0) -> Path:
    path = out / name / FILES[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    data = frame.drop("_pid")
    if name.startswith("cn_mps/"):
        _write.write_csv(data, path, "gb18030")
    elif name == "th_imm/repatriations":
        _write.write_csv(data, path, "utf-8-sig")
    elif name == "th_imm/detentions":
        _write.write_xlsx(data, path, sheet="ผู้ถูกควบคุมตัว")
    else:
        _write.write_jsonl(data, path)
        if malformed:
            _malformed_lines(path, malformed)
    return path


def _malformed_lines(path: Path, count: int) -> None:
    """Insert ``count`` malformed JSON lines (a truncated copy of the line after them) at even
    intervals: an export cut short. Every real row stays whole, so no person is lost."""
    lines = path.read_bytes().decode("utf-8").splitlines(keepends=True)
    step = max(1, len(lines) // (count + 1))
    out: list[str] = []
    for i, line in enumerate(lines):
        if i and i % step == 0 and len(out) - i < count:
            out.append(line[: len(line) // 2] + "\n")
        out.append(line)
    path.write_bytes("".join(out).encode("utf-8"))


def _scenario(people: int, seed: int, p: Params):
    """The random stream, the population and who is seen where: the start of every drop."""
    if people < 1:
        raise ValueError(f"people must be at least 1, got {people}")
    rng = np.random.Generator(np.random.PCG64(seed))
    pop = _population.build(people, rng, p)
    return rng, pop, _feeds.journeys(pop, rng, p)


def generate(people: int, seed: int, out: Path, params: Params | None = None) -> dict:
    """Write one drop per feed and the ground truth for ``people`` synthetic people.

    Args:
        people: size of the population (every person is in at least zero feeds; victims are
            always in fraud_reports).
        seed: random seed; the same (people, seed) gives byte-identical files.
        out: output folder; files go to ``out/<agency>/<feed>/<file>``, plus ``out/truth.csv``
            (agency, feed, source_key, person_id: one row per person row of every feed) and
            ``out/truth_links.csv`` (kind, value, person_id: shared compound, account, wallet,
            phone).
        params: shares and planted-defect rates (default: the constants of params.py).

    Returns:
        ``{"files": {feed: Path}, "rows": {feed: int}, "persons": int}``.
    """
    p = params or Params()
    out = Path(out)
    rng, pop, jr = _scenario(people, seed, p)
    out.mkdir(parents=True, exist_ok=True)
    frames: dict[str, pl.DataFrame] = {}
    frames["cn_mps/suspects"] = _feeds.suspects(pop, jr, rng, p)
    frames["cn_mps/fraud_reports"], report_links = _feeds.fraud_reports(pop, jr, rng, p)
    frames["th_imm/detentions"] = _feeds.detentions(pop, jr, rng, p)
    frames["th_imm/repatriations"] = _feeds.repatriations(pop, jr, rng, p)
    frames["mm_police/detainees"] = _feeds.detainees(pop, jr, rng, p)

    files, rows, truth = {}, {}, []
    for name, frame in frames.items():
        files[name] = _write_feed(name, frame, out, p.malformed_lines if name.endswith(
            "detainees") else 0)
        rows[name] = frame.height
        agency, feed = name.split("/")
        truth.append(
            frame.select(
                pl.lit(agency).alias("agency"),
                pl.lit(feed).alias("feed"),
                pl.col(KEYS[name]).alias("source_key"),
                pl.col("_pid").alias("person_id"),
            )
        )
    pl.concat(truth).write_csv(out / "truth.csv")
    _links(pop, report_links).write_csv(out / "truth_links.csv")
    return {"files": files, "rows": rows, "persons": people}


def generate_follow_up(people: int, seed: int, out: Path, rows: int,
                       params: Params | None = None) -> dict:
    """Write the next, small delivery of the scenario ``(people, seed)``: ``rows`` rows of
    mm_police/detainees from a later raid, about half of them people already in the scenario.

    The first drops are not written again: give the ``out`` folder of the :func:`generate` call
    it follows, and the file lands beside that feed's first file under another name
    (``out/mm_police/detainees/detainees-follow-up.jsonl``) while its truth rows are appended to
    ``out/truth.csv`` (one per row with a case number), so the truth covers the lake after both
    drops (written again, a follow-up replaces its own earlier rows there and leaves the others).
    In a fresh folder, truth.csv holds the follow-up's rows alone. The same (people, seed, rows)
    gives the same bytes.

    Returns:
        ``{"files": {feed: Path}, "rows": {feed: int}, "persons": people, "known": int}``:
        ``known`` rows are of people already in the scenario.
    """
    p = params or Params()
    out = Path(out)
    _rng, pop, jr = _scenario(people, seed, p)
    frame = _follow_up.detainees(pop, jr, rows, _follow_up.rng_for(seed), p)
    agency, feed = _follow_up.FEED.split("/")
    path = out / _follow_up.FEED / _follow_up.FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # No truncated lines planted (the first drop has two): ROWS is then the drop's rows as the
    # pipeline counts them, the lines of the file and the truth rows alike.
    _write.write_jsonl(frame.drop("_pid"), path)
    # One truth row per row with a case number: a row without one is quarantined and cannot be
    # scored, and leaving it out lets a follow-up written again find all of its own rows.
    truth = frame.select(pl.lit(agency).alias("agency"), pl.lit(feed).alias("feed"),
                         pl.col(KEYS[_follow_up.FEED]).alias("source_key"),
                         pl.col("_pid").alias("person_id")).drop_nulls("source_key")
    truth_path = out / "truth.csv"
    if truth_path.exists():
        earlier = pl.read_csv(truth_path, infer_schema=False)
        mine = ((pl.col("agency") == agency) & (pl.col("feed") == feed)
                & pl.col("source_key").str.starts_with(_follow_up.KEY_PREFIX))
        truth = pl.concat([earlier.filter(~mine.fill_null(False)), truth])  # keyless: kept
    truth.write_csv(truth_path)
    known = frame["_pid"].str.slice(1).cast(pl.Int64).le(people).sum()
    return {"files": {_follow_up.FEED: path}, "rows": {_follow_up.FEED: frame.height},
            "persons": people, "known": int(known)}


def _links(pop: pl.DataFrame, report_links: pl.DataFrame) -> pl.DataFrame:
    """Non-identity links: compound membership, shared hub phones, and the report links."""
    compounds = [c["en"] for c in _population.tables()["compounds"]]
    members = pop.filter(pl.col("compound") >= 0).select(
        pl.lit("compound").alias("kind"),
        pl.col("compound")
        .replace_strict(list(range(len(compounds))), compounds, return_dtype=pl.String)
        .alias("value"),
        "person_id",
    )
    hubs = pop.filter("hub_phone").select(
        pl.lit("phone").alias("kind"),
        ("+95" + pl.col("mm_phone").str.slice(1)).alias("value"),
        "person_id",
    )
    return pl.concat([members, hubs, report_links]).unique(maintain_order=True)


__all__ = ["FILES", "KEYS", "Params", "generate", "generate_follow_up"]
