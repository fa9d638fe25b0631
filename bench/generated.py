"""Generated agency drops, resolved, against plain Splink on the raw fields of the same files.

Usage::

    .venv/bin/python bench/generated.py --people 10000 --seed 1

``fusionlake generate`` writes one drop per feed and truth.csv; each drop is read
(fusionlake.pipeline.read.read_drop) and mapped (transforms.canonical.to_canonical) exactly as the
pipeline does, then resolved. The baseline is Splink on the values *as written* (names in their
own scripts, birth dates in their own calendars and formats, identifiers unnormalised), with the
same training plan: what Splink gives without the normalisation and identifier logic of
fusionlake. Both are scored with transforms.evaluate against truth.csv. The drops carry the shapes
of real registers (fusionlake/synth/params.py: Latin name columns beside native ones, a document
column of mixed kinds, mixed-script NRCs, corrupted birth dates).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import tempfile
import time
from pathlib import Path

import polars as pl

from fusionlake.lake.schema import record_id_expr

TABLES = ("person_record", "person_name", "identifier", "phone", "account", "event")


def _first(feed, targets: tuple[str, ...]) -> list[str]:
    return [col for col, opts in feed.columns.items() if opts.get("to") in targets]


def load_generated(out: Path) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame]:
    """Read and map every generated drop under ``out``.

    Returns:
        (canonical tables, truth, raw): raw has record_id, agency, feed, source_key and the
        person fields as written (name_raw, dob_raw, sex_raw, nat_raw, id_raw).
    """
    from fusionlake.lake.feeds import load_feeds
    from fusionlake.pipeline.read import read_drop
    from transforms.canonical import to_canonical

    feeds = load_feeds()
    parts: dict[str, list[pl.DataFrame]] = {t: [] for t in TABLES}
    raws = []
    for path in sorted(out.glob("*/*/*")):
        agency, feed_name = path.parts[-3], path.parts[-2]
        feed = feeds.get(agency, feed_name)
        data = path.read_bytes()
        drop_id = hashlib.sha256(data).hexdigest()[:16]
        frame = read_drop(data, path.name, feed)
        canon = to_canonical(frame, feed, drop_id)
        for t in TABLES:
            parts[t].append(canon[t])
        if canon["person_record"].height == 0:
            continue
        names = [c for c in _first(feed, ("person.name",))
                 if feed.columns[c].get("name_role", "primary") == "primary"] or _first(
            feed, ("person.family_name", "person.given_name"))
        cols = {
            "name_raw": pl.concat_str([pl.col(c) for c in names], separator=" ",
                                      ignore_nulls=True),
            "dob_raw": pl.col(_first(feed, ("person.birth_date",))[0])
            if _first(feed, ("person.birth_date",)) else pl.lit(None, pl.String),
            "sex_raw": pl.col(_first(feed, ("person.sex",))[0])
            if _first(feed, ("person.sex",)) else pl.lit(None, pl.String),
            "nat_raw": pl.col(_first(feed, ("person.nationality",))[0])
            if _first(feed, ("person.nationality",)) else pl.lit(None, pl.String),
            "id_raw": pl.coalesce([pl.col(c) for c in _first(feed, ("identifier",))])
            if _first(feed, ("identifier",)) else pl.lit(None, pl.String),
        }
        raws.append(frame.select(
            record_id_expr(drop_id).alias("record_id"), pl.lit(agency).alias("agency"),
            pl.lit(feed_name).alias("feed"),
            pl.col(feed.source_key).cast(pl.String).str.strip_chars().alias("source_key"),
            *[expr.cast(pl.String).str.strip_chars().replace("", None).alias(name)
              for name, expr in cols.items()],
        ))
    tables = {t: pl.concat(frames, how="vertical_relaxed") for t, frames in parts.items()}
    truth = pl.read_csv(out / "truth.csv", infer_schema=False)
    return tables, truth, pl.concat(raws)


def baseline_splink(raw: pl.DataFrame, threshold: float = 0.5) -> pl.DataFrame:
    """Plain Splink on the raw fields; Splink's connected components at ``threshold``."""
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    settings = SettingsCreator(
        link_type="dedupe_only", unique_id_column_name="record_id",
        blocking_rules_to_generate_predictions=[
            block_on("name_raw"), block_on("dob_raw"), block_on("id_raw")],
        comparisons=[
            cl.JaroWinklerAtThresholds("name_raw", [0.92, 0.8]),
            cl.DamerauLevenshteinAtThresholds("dob_raw", [1]),
            cl.ExactMatch("sex_raw"), cl.ExactMatch("nat_raw"),
            cl.DamerauLevenshteinAtThresholds("id_raw", [1]),
        ],
    )
    db_api = DuckDBAPI(connection=duckdb.connect())
    linker = Linker(db_api.register(raw.select("record_id", "name_raw", "dob_raw", "sex_raw",
                                               "nat_raw", "id_raw").to_arrow(),
                                    table_name="raw"), settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("id_raw"), block_on("name_raw", "dob_raw")], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=42)
    for rule in (block_on("dob_raw"), block_on("name_raw")):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True, max_pairs=1e6)
    pred = linker.inference.predict(threshold_match_probability=0.05)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        pred, threshold_match_probability=threshold)
    return pl.from_arrow(clusters.as_duckdbpyrelation().select("cluster_id", "record_id")
                         .to_arrow_table()).rename({"cluster_id": "entity_id"})


def main() -> None:
    from fusionlake.synth import generate
    from transforms.evaluate import evaluate
    from transforms.resolution.resolve import resolve

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        generate(args.people, args.seed, Path(tmp))
        t_gen = time.perf_counter() - t
        t = time.perf_counter()
        tables, truth, raw = load_generated(Path(tmp))
        t_load = time.perf_counter() - t
    t = time.perf_counter()
    ours = resolve(tables)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    base = baseline_splink(raw)
    t_base = time.perf_counter() - t
    records = tables["person_record"]
    rows = [("fusionlake resolve", evaluate(ours.entity_record, truth, records), t_ours),
            ("Splink on raw fields", evaluate(base, truth, raw), t_base)]
    print(f"\n{args.people:,} generated people (seed {args.seed}): {records.height:,} person "
          f"records; generate {t_gen:.1f} s, read+map {t_load:.1f} s\n")
    print(f"{'model':<22}{'precision':>10}{'recall':>9}{'f1':>8}{'b3_f1':>8}{'seconds':>9}")
    for name, m, secs in rows:
        print(f"{name:<22}{m['precision']:>10.4f}{m['recall']:>9.4f}{m['f1']:>8.4f}"
              f"{m['b3_f1']:>8.4f}{secs:>9.1f}")
    seconds = ", ".join(f"{k} {v:.1f}" for k, v in ours.stats["seconds"].items())
    print(f"\nresolve stages (s): {seconds}\nresolve counts: {ours.stats['counts']}")


if __name__ == "__main__":
    main()
