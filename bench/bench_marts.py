"""Benchmark: build the DuckDB marts for N people of synthetic staged + resolution frames.

Prints one table: build time (median of --runs), peak resident memory of the process (Polars
frames + DuckDB, from getrusage), the mart file's size, the audience-filtered build, and the time
of each saved query (median of --runs) on the all-agencies mart.

The frames are made directly with NumPy/Polars in the shape the pipeline produces (several
records per person across agencies, shared phones, compounds, fraud reports paying into
suspects' cards); entity links come from the resolver's own code (transforms/resolution/links.py).

    .venv/bin/python bench/bench_marts.py --people 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from fusionlake.lake import schema
from fusionlake.lake.settings import configure_offline
from fusionlake.pipeline import marts

FEEDS = [  # agency, feed, role, event_type, country, releasable_to
    ("cn_mps", "suspects", "suspect", "wanted", "CN", ["cn_mps", "th_imm"]),
    ("cn_mps", "fraud_reports", "victim", "fraud_report", "CN", ["cn_mps"]),
    ("th_imm", "detentions", "detainee", "detention", "TH", ["th_imm", "cn_mps", "mm_police"]),
    ("th_imm", "repatriations", "returnee", "repatriation", "TH",
     ["th_imm", "cn_mps", "mm_police"]),
    ("mm_police", "detainees", "detainee", "detention", "MM", ["mm_police", "th_imm"]),
]  # fmt: skip
COMPOUNDS = ["KK Park", "Shwe Kokko", "Yatai New City", "Dongmei", "Tai Chang", "Huanya"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def synthetic(people: int, seed: int = 7) -> tuple[dict, dict, dict]:
    """Staged, resolution and steward frames for ``people`` persons."""
    from transforms.resolution.links import association_values, entity_links
    from transforms.resolution.settings import ResolveSettings

    rng = np.random.default_rng(seed)
    per_person = rng.choice([1, 2, 3], size=people, p=[0.7, 0.2, 0.1])
    person = np.repeat(np.arange(people), per_person)
    n = len(person)
    feed_ix = rng.integers(0, len(FEEDS), n)
    feeds = pl.DataFrame(
        {
            "feed_ix": np.arange(len(FEEDS)),
            "agency": [f[0] for f in FEEDS],
            "feed": [f[1] for f in FEEDS],
            "role": [f[2] for f in FEEDS],
            "event_type": [f[3] for f in FEEDS],
            "country": [f[4] for f in FEEDS],
            "releasable_to": [f[5] for f in FEEDS],
        }
    )
    base = (
        pl.DataFrame({"person": person, "feed_ix": feed_ix, "source_row": np.arange(1, n + 1)})
        .join(feeds, on="feed_ix", how="left")
        .with_columns(
            pl.concat_str([pl.lit("d_"), pl.col("agency"), pl.lit("_"), pl.col("feed")]).alias(
                "drop_id"
            ),
            pl.col("source_row").cast(pl.String).alias("source_key"),
        )
        .with_columns(
            pl.concat_str([pl.col("drop_id"), pl.lit(":"), pl.col("source_key")]).alias(
                "record_id"
            ),
            pl.concat_str([pl.lit("E"), pl.col("person").cast(pl.String)]).alias("entity_id"),
        )
    )
    born = date(1960, 1, 1).toordinal() + rng.integers(0, 40 * 365, people)
    names = pl.DataFrame(
        {
            "person": np.arange(people),
            "name_latin": [f"NAME{i % 50_000} PERSON{i % 997}" for i in range(people)],
            "birth_date": [date.fromordinal(int(d)) for d in born],
            "sex": np.where(rng.random(people) < 0.6, "M", "F"),
        }
    )
    person_record = schema.conform(
        base.join(names, on="person", how="left").with_columns(
            pl.col("name_latin").alias("name_original"),
            pl.lit("Latin").alias("name_script"),
            pl.lit("day").alias("birth_date_precision"),
            pl.lit("CN").alias("nationality"),
        ),
        "person_record",
    )
    identifier = schema.conform(
        base.with_columns(
            pl.lit("passport").alias("kind"),
            pl.format("E{}", pl.col("person").cast(pl.String).str.zfill(8)).alias(
                "value_normalised"
            ),
            pl.lit("CN").alias("issuing_country"),
            pl.lit(True).alias("check_valid"),
        ).with_columns(pl.col("value_normalised").alias("value_original")),
        "identifier",
    )
    # Phones: own numbers, a few percent shared (family, handed-down SIMs, compound phones).
    phone_owner = rng.integers(0, int(people * 0.97), n)
    phone = schema.conform(
        base.with_columns(
            pl.lit("own").alias("relation"),
            pl.Series("e164", [f"+66{8_0000_0000 + int(p)}" for p in phone_owner]),
            pl.lit("TH").alias("country"),
        ).with_columns(pl.col("e164").alias("phone_original")),
        "phone",
    )
    # Accounts: suspects hold cards; fraud reports pay into a suspect's card.
    suspects = base.filter(pl.col("feed") == "suspects")
    cards = suspects.with_columns(
        pl.lit("own").alias("relation"),
        pl.format("6222{}", pl.col("person").cast(pl.String).str.zfill(12)).alias(
            "value_normalised"
        ),
    )
    victims = base.filter(pl.col("feed") == "fraud_reports")
    target = rng.integers(0, max(suspects.height, 1), victims.height)
    paid = victims.with_columns(
        pl.lit("counterparty").alias("relation"),
        suspects["person"].gather(target).alias("payee"),
    ).with_columns(
        pl.format("6222{}", pl.col("payee").cast(pl.String).str.zfill(12)).alias(
            "value_normalised"
        )
    )
    account = schema.conform(
        pl.concat([cards, paid.drop("payee")]).with_columns(
            pl.lit("bank_card").alias("kind"),
            pl.lit("ICBC").alias("institution"),
            pl.lit(True).alias("check_valid"),
            pl.col("value_normalised").alias("value_original"),
        ),
        "account",
    )
    days = date(2025, 1, 1).toordinal() + rng.integers(0, 365, n)
    compound = pl.Series("compound", [*COMPOUNDS, None, None, None, None], dtype=pl.String)
    compound = compound.gather(rng.integers(0, 10, n))
    event = schema.conform(
        base.with_columns(
            pl.Series("event_date", [date.fromordinal(int(d)) for d in days]),
            pl.when(pl.col("event_type") == "detention")
            .then(compound)
            .alias("compound"),
            pl.when(pl.col("agency") == "cn_mps")
            .then(pl.format("CASE-{}", (pl.col("person") // 20).cast(pl.String)))
            .alias("case_ref"),
            pl.when(pl.col("event_type") == "fraud_report").then(50_000.0).alias("amount"),
            pl.when(pl.col("event_type") == "fraud_report").then(pl.lit("CNY")).alias("currency"),
        ),
        "event",
    )
    staged = {"person_record": person_record, "identifier": identifier, "phone": phone,
              "account": account, "event": event}  # fmt: skip

    entity_record = base.select("entity_id", "record_id")
    settings = ResolveSettings()
    entity_link = entity_links(association_values(staged, settings), entity_record, settings)
    firsts = base.group_by("person").agg(pl.col("record_id").first().alias("record_id_l"))
    record_link = schema.conform(
        base.join(firsts, on="person")
        .filter(pl.col("record_id") != pl.col("record_id_l"))
        .select(
            "record_id_l",
            pl.col("record_id").alias("record_id_r"),
            pl.lit("identifier").alias("rule"),
            pl.lit(1.0).alias("match_probability"),
            pl.lit(["passport"]).alias("agreed"),
        ),
        "record_link",
    )
    multi = firsts.head(min(50_000, firsts.height))
    entity_history = schema.conform(
        multi.select(
            pl.concat_str([pl.lit("E"), pl.col("person").cast(pl.String), pl.lit("x")]).alias(
                "old_entity_id"
            ),
            pl.concat_str([pl.lit("E"), pl.col("person").cast(pl.String)]).alias(
                "new_entity_id"
            ),
            pl.lit("merge").alias("change"),
            pl.lit(datetime(2026, 11, 27, tzinfo=UTC)).alias("changed_at"),
        ),
        "entity_history",
    )
    review_pair = schema.conform(
        record_link.head(10_000).select(
            "record_id_l", "record_id_r", pl.lit(0.5).alias("match_probability"),
            pl.lit(0.9).alias("priority"),
        ),
        "review_pair",
    )  # fmt: skip
    resolution = {"entity_record": entity_record, "record_link": record_link,
                  "entity_link": entity_link, "entity_history": entity_history,
                  "review_pair": review_pair}  # fmt: skip
    drops = base.select("drop_id", "agency", "feed").unique().sort("drop_id")
    now = datetime(2026, 11, 1, tzinfo=UTC)
    ledger = drops.with_columns(
        pl.col("drop_id").alias("file_name"), pl.col("drop_id").alias("sha256"),
        pl.lit(1_000_000).alias("size"), pl.lit("staged").alias("state"),
        pl.lit(now).alias("received_at"), pl.lit(now).alias("updated_at"),
    )  # fmt: skip
    validation = drops.select(
        "drop_id", pl.lit("expect_column_values_to_not_be_null").alias("expectation"),
        pl.lit("name").alias("column"), pl.lit(False).alias("success"),
        pl.lit(10).alias("unexpected_count"),
    )  # fmt: skip
    quarantine = pl.concat([
        drops.select("drop_id", "agency", "feed", pl.lit(i).alias("source_row"),
                     pl.lit("expect_column_values_to_not_be_null").alias("expectation"),
                     pl.lit("empty name").alias("reason"))
        for i in range(1, 11)
    ])  # fmt: skip
    steward = {"drop_ledger": ledger, "validation_result": validation, "quarantine": quarantine}
    return staged, resolution, steward


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    configure_offline()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="6GB", help="DuckDB memory_limit")
    args = parser.parse_args(argv)
    console = Console(width=110)

    t0 = time.perf_counter()
    staged, resolution, steward = synthetic(args.people)
    make_s = time.perf_counter() - t0
    rss_inputs = _rss_mb()
    rows = {k: v.height for k, v in {**staged, **resolution}.items()}

    out = Path(tempfile.mkdtemp(prefix="bench-marts-"))
    stats: list[marts.MartStats] = []
    for i in range(args.runs):
        stats.append(marts.build_mart(out / f"all{i}.duckdb", staged, resolution, steward, None,
                                      threads=args.threads,
                                      memory_limit=args.memory_limit))  # fmt: skip
    build_s = statistics.median(s.seconds for s in stats)
    rss_all = _rss_mb()
    aud = marts.build_mart(out / "th_imm.duckdb", staged, resolution, steward, "th_imm",
                           threads=args.threads, memory_limit=args.memory_limit)  # fmt: skip
    rss_aud = _rss_mb()
    mart = stats[0].path

    table = Table(title=f"marts: {args.people:,} people, {rows['person_record']:,} records")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, count in rows.items():
        table.add_row(f"input {name} (rows)", f"{count:,}")
    table.add_row("make synthetic frames (s)", f"{make_s:.1f}")
    table.add_row(f"build all mart, median of {args.runs} (s)", f"{build_s:.1f}")
    for step in stats[0].step_seconds:
        med = statistics.median(s.step_seconds[step] for s in stats)
        table.add_row(f"  step {step} (s)", f"{med:.2f}")
    table.add_row("build th_imm mart, 1 run (s)", f"{aud.seconds:.1f}")
    table.add_row("all mart file size (MB)", f"{stats[0].size_bytes / 1e6:.0f}")
    table.add_row("th_imm mart file size (MB)", f"{aud.size_bytes / 1e6:.0f}")
    table.add_row("peak RSS after making inputs (MB)", f"{rss_inputs:.0f}")
    table.add_row("peak RSS after all-mart builds (MB)", f"{rss_all:.0f}")
    table.add_row("peak RSS after th_imm build (MB)", f"{rss_aud:.0f}")
    table.add_row("entity_link rows (all mart)", f"{stats[0].table_rows['entity_link']:,}")
    con = duckdb.connect(str(mart), read_only=True)
    for name, query in marts.saved_queries().items():
        n_rows = len(con.execute(query.sql).fetchall())
        med = _median_time(lambda q=query: con.execute(q.sql).fetchall(), args.runs)
        table.add_row(f"query {name} (s, {n_rows:,} rows)", f"{med:.3f}")
    con.close()
    console.print(table)
    for path in out.iterdir():
        path.unlink()
    out.rmdir()


if __name__ == "__main__":
    sys.exit(main())
