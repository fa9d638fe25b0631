"""The yardstick: plain Splink 5 on DuckDB deduplicating as many simple person records.

    .venv/bin/python bench/yardstick.py --rows 1677560

Every stage of the pipeline is compared with this, measured in the same run, so the ratios hold
on a noisy machine (bench/bench_pipeline.py runs it beside the pipeline). The workload:

* records: 60% originals and 40% noisy copies of them (a typo in a name, a swapped day and
  month, a dropped or changed email, another city), with first name, surname, birth date, city
  and email;
* comparisons: ``NameComparison`` on both names, ``DateOfBirthComparison``, ``ExactMatch`` on
  city with term frequencies, ``EmailComparison``;
* blocking: first name + surname, surname + birth date, email;
* training: lambda estimated, u by random sampling over 1e6 pairs, EM on two blocking rules
  (first name + surname, then email: between them every comparison is trained);
* predict and cluster at 0.9.

The issue names the EM rules only as "two blocking rules". Its figures (21.7 s and 1.8-1.9 GB at
1,677,560 records) fix which kind: rules whose pairs grow with the records. This script first
trained on first name + surname and on birth date alone, as Splink's tutorial does; with 20,075
birth dates a birth-date block holds n/20,075 records, so its pairs grow as n squared: 0.7M pairs
at 167k records, 70M at 1.67M, and training took 397.6 s and 14.5 GB there (bench/RESULTS.md).

It runs in a child process so that its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

FIRST = ["anna", "ben", "chen", "dara", "eli", "fang", "grace", "hui", "ivan", "jun", "kai",
         "lin", "mei", "nok", "omar", "ploy", "qiang", "rosa", "somchai", "thida", "umar",
         "vivian", "wei", "xin", "yan", "zaw", "aung", "kyaw", "malee", "niran"]
LAST = ["wang", "li", "zhang", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou", "saetang",
        "srisuk", "chaiyaporn", "win", "oo", "htun", "naing", "smith", "nguyen", "tran", "le",
        "pham", "khin", "maung", "soe", "thein", "kaewmanee", "boonmee", "wongsa", "suksan"]
CITIES = ["bangkok", "mae sot", "yangon", "myawaddy", "kunming", "fuzhou", "vientiane",
          "phnom penh", "hanoi", "chiang mai", "mandalay", "xiamen"]


def records(rows: int, seed: int = 0) -> pl.DataFrame:
    """``rows`` person records, 60% originals and 40% noisy copies of some of them."""
    rng = np.random.default_rng(seed)
    n_orig = int(rows * 0.6)
    n_copy = rows - n_orig
    # names: a syllable pair per part makes about 900 x 900 distinct full names
    first = (pl.Series(rng.choice(FIRST, n_orig)) + pl.Series(rng.choice(FIRST, n_orig)))
    last = (pl.Series(rng.choice(LAST, n_orig)) + pl.Series(rng.choice(LAST, n_orig)))
    dob = pl.Series(np.datetime64("1950-01-01")
                    + rng.integers(0, 365 * 55, n_orig).astype("timedelta64[D]"))
    orig = pl.DataFrame({
        "unique_id": np.arange(n_orig), "person_id": np.arange(n_orig),
        "first_name": first, "surname": last, "dob": dob.dt.strftime("%Y-%m-%d"),
        "city": rng.choice(CITIES, n_orig),
    }).with_columns(email=pl.col("first_name") + "." + pl.col("surname")
                    + (pl.lit(rng.integers(1, 99, n_orig))).cast(pl.String) + "@mail.test")
    src = orig.sample(n_copy, with_replacement=True, seed=seed)
    pos = pl.Series(rng.integers(0, 6, n_copy))
    noise = rng.random((5, n_copy))
    typo = (pl.col("first_name").str.slice(0, pos) + "x"
            + pl.col("first_name").str.slice(pos + 1))
    copies = src.with_columns(
        unique_id=pl.Series(np.arange(n_orig, rows)),
        first_name=pl.when(pl.lit(noise[0] < 0.3)).then(typo).otherwise("first_name"),
        surname=pl.when(pl.lit(noise[1] < 0.1)).then(pl.col("surname").str.slice(1))
        .otherwise("surname"),
        dob=pl.when(pl.lit(noise[2] < 0.1)).then(
            pl.col("dob").str.slice(0, 5) + pl.col("dob").str.slice(8, 2) + "-"
            + pl.col("dob").str.slice(5, 2)).otherwise("dob"),
        email=pl.when(pl.lit(noise[3] < 0.3)).then(None).otherwise("email"),
        city=pl.when(pl.lit(noise[4] < 0.1)).then(pl.lit(CITIES[0])).otherwise("city"),
    )
    return pl.concat([orig, copies]).with_columns(pl.col("unique_id").cast(pl.Int64))


def plain_splink(frame: pl.DataFrame) -> dict:
    """Train, predict and cluster; seconds per step and the clusters found."""
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    seconds = {}
    t0 = time.perf_counter()
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("first_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.EmailComparison("email"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("first_name", "surname"), block_on("surname", "dob"), block_on("email")],
        retain_intermediate_calculation_columns=False,
    )
    db_api = DuckDBAPI(connection=duckdb.connect())
    linker = Linker(db_api.register(frame.drop("person_id").to_arrow(), table_name="people"),
                    settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname", "dob"), block_on("email")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"))
    seconds["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = linker.inference.predict(threshold_match_probability=0.9)
    seconds["predict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        pred, threshold_match_probability=0.9)
    n = clusters.as_duckdbpyrelation().aggregate("count(DISTINCT cluster_id)").fetchall()[0][0]
    seconds["cluster"] = time.perf_counter() - t0
    return {"seconds": seconds, "clusters": n}


def child(rows: int, seed: int) -> None:
    logging.getLogger("splink").setLevel(logging.ERROR)
    frame = records(rows, seed)
    t0 = time.perf_counter()
    out = plain_splink(frame)
    out["total"] = time.perf_counter() - t0
    out["rows"] = frame.height
    out["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("@yardstick " + json.dumps(out), flush=True)


def measure(rows: int, seed: int = 0) -> dict:
    """Plain Splink on ``rows`` records in a fresh process: total seconds (training, prediction
    and clustering, not making the records), seconds per step, peak bytes, clusters."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                           "--rows", str(rows), "--seed", str(seed)],
                          capture_output=True, text=True, check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith("@yardstick ")]
    if done.returncode or not lines:
        raise RuntimeError(f"yardstick failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1].removeprefix("@yardstick "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=167_756)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows, args.seed)
        return
    out = measure(args.rows, args.seed)
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in out["seconds"].items())
    print(f"plain Splink on {out['rows']:,} records: {out['total']:.1f} s ({steps}), "
          f"peak {out['peak'] / 2**20:,.0f} MiB, {out['clusters']:,} clusters")


if __name__ == "__main__":
    main()
