"""Benchmark: resolve() against plain Splink on the same records, in the same run.

Usage::

    .venv/bin/python bench/bench_resolve.py --people 100000 --runs 3
    .venv/bin/python bench/bench_resolve.py --febrl --runs 3

Records are synthetic canonical frames (``synthetic_tables``: people with 1-4 records each
across three agencies, with typos, swapped name order, missing or year-only birth dates, CN
resident IDs, passports, shared phones and compounds), or FEBRL4 with ``--febrl``, onboarded
through its feed files (bench/feeds/febrl/) as the pipeline does it. Once
``fusionlake generate`` and the feed mapping are in place, the generated drops should replace the
synthetic frames here.

Each variant runs in a fresh subprocess per run so that its peak resident memory
(``ru_maxrss``, which also counts DuckDB's native memory, unlike tracemalloc) is its own. The
table shows the median seconds of each stage over the runs, the peak memory, and precision,
recall and F1 against the truth.

* ``resolve``: transforms.resolution.resolve.resolve(), stages as in Resolution.stats["seconds"].
* ``splink``: plain Splink 5 on DuckDB on the same match frame with the same compiled settings
  and training plan, then Splink's connected components at the same threshold: what resolve()
  would cost and score without identifier logic, guards, stable ids and explanations.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from febrl import febrl4_via_feeds, phonetic_key  # noqa: E402

from fusionlake.lake.schema import conform  # noqa: E402
from transforms.names import sort_tokens  # noqa: E402

SYLLABLES = (
    "an ang bai bao bin bo cai can cao chen cheng chun cong da dan de deng di dong du fang fei "
    "feng fu gang gao ge gui guo hai han hao he hong hu hua huan hui jia jian jiang jie jin jing "
    "jun kai kang lan lei li lian liang lin ling liu long lu mei min ming na nan ning peng ping "
    "qi qian qiang qing qiu rong rui shan sheng shi shu song tao tian ting wei wen xia xiang xiao "
    "xin xing xiu xu ya yan yang yi ying yong yu yuan yun ze zhen zheng zhi zhong zhou zi"
).upper().split()
FAMILY = (
    "wang li zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo he gao lin luo zheng "
    "liang xie song tang han feng deng cao peng zeng xiao tian dong pan yuan cai jiang yu du "
    "ye cheng wei su lu ding ren shen yao"
).upper().split()
AGENCIES = [("cn_mps", "suspects", "CN"), ("th_imm", "detentions", "TH"),
            ("mm_police", "detainees", "MM")]


def _typo(s: pl.Expr, pos: pl.Expr) -> pl.Expr:
    """Replace the character at pos by 'X' (a transcription error)."""
    return pl.concat_str(s.str.slice(0, pos), pl.lit("X"), s.str.slice(pos + 1))


def synthetic_tables(people: int, seed: int = 7) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Canonical staged tables of ``people`` synthetic persons, and the truth."""
    rng = np.random.default_rng(seed)
    fam = rng.choice(FAMILY, people)
    giv1 = rng.choice(SYLLABLES, people)
    giv2 = np.where(rng.random(people) < 0.6, rng.choice(SYLLABLES, people), "")
    base = pl.DataFrame({
        "person_id": np.arange(people).astype(str),
        "family": fam, "given": np.char.add(giv1, giv2),
        "birth": (np.datetime64("1960-01-01") + rng.integers(0, 45 * 365, people)),
        "sex": rng.choice(["M", "F"], people),
        "nationality": rng.choice(["CN", "TH", "MM"], people, p=[0.6, 0.2, 0.2]),
        "cn_id": np.char.add("1101011", rng.integers(10**10, 10**11, people).astype(str)),
        "passport": np.char.add("E", rng.integers(10**7, 10**8, people).astype(str)),
        "phone": np.char.add("+86138", rng.integers(10**7, 10**8, people).astype(str)),
        "n": np.minimum(1 + rng.poisson(0.9, people), 4),
    }).with_columns(pl.col("birth").cast(pl.Date))
    rec = base.select(pl.all().repeat_by("n")).explode(base.columns).drop("n")
    n = rec.height
    r = rng.random((8, n))
    agency = rng.integers(0, 3, n)
    rec = rec.with_columns(
        pl.Series("agency_i", agency),
        pl.Series("r0", r[0]), pl.Series("r1", r[1]), pl.Series("r2", r[2]),
        pl.Series("r3", r[3]), pl.Series("r4", r[4]), pl.Series("r5", r[5]),
        pl.Series("r6", r[6]), pl.Series("r7", r[7]),
        pl.Series("pos", rng.integers(1, 4, n)),
    ).with_columns(
        pl.when(pl.col("r0") < 0.15).then(_typo(pl.col("given"), pl.col("pos")))
        .otherwise(pl.col("given")).alias("given"),
        pl.when(pl.col("r1") < 0.1).then(pl.lit(None)).otherwise(pl.col("birth")).alias("birth"),
        pl.when(pl.col("r1") < 0.1).then(pl.lit(None))
        .when(pl.col("r1") < 0.2).then(pl.lit("year")).otherwise(pl.lit("day"))
        .alias("precision"),
    ).with_columns(
        pl.when(pl.col("precision") == "year").then(pl.col("birth").dt.truncate("1y"))
        .otherwise(pl.col("birth")).alias("birth"),
        pl.when(pl.col("r2") < 0.08).then(pl.lit(None)).otherwise(pl.col("sex")).alias("sex"),
    )
    agencies = pl.DataFrame({"agency_i": [0, 1, 2], "agency": [a for a, _, _ in AGENCIES],
                             "feed": [f for _, f, _ in AGENCIES]})
    rec = rec.join(agencies, on="agency_i").with_row_index("row", offset=1).with_columns(
        pl.concat_str(pl.col("agency"), pl.lit(":"), pl.col("row").cast(pl.String))
        .alias("record_id"),
        pl.col("row").cast(pl.Int64).alias("source_row"),
        pl.col("row").cast(pl.String).alias("source_key"),
        pl.lit("drop-" + str(seed)).alias("drop_id"),
    )
    swapped = pl.col("r3") < 0.1  # given name written first
    tokens = pl.concat_list("family", "given")
    persons = rec.with_columns(
        pl.when(swapped).then(pl.col("given")).otherwise(pl.col("family")).alias("family_name"),
        pl.when(swapped).then(pl.col("family")).otherwise(pl.col("given")).alias("given_name"),
        sort_tokens(tokens).list.join(" ").alias("name_key_sorted"),
        phonetic_key(tokens).alias("name_key_phonetic"),
        pl.col("birth").alias("birth_date"), pl.col("precision").alias("birth_date_precision"),
        pl.lit("Latin").alias("name_script"),
    ).with_columns(pl.concat_str("family_name", "given_name", separator=" ").alias("name_latin"))
    persons = persons.with_columns(pl.col("name_latin").alias("name_original"))
    cn = rec.filter((pl.col("nationality") == "CN") & (pl.col("r4") < 0.5)).select(
        "record_id", pl.lit("cn_resident_id").alias("kind"),
        pl.when(pl.col("r5") < 0.03).then(_typo(pl.col("cn_id"), pl.col("pos") + 8))
        .otherwise(pl.col("cn_id")).alias("value_normalised"),
        pl.lit("CN").alias("issuing_country"), (pl.col("r5") >= 0.03).alias("check_valid"),
        pl.col("birth").alias("implied_birth_date"), pl.col("sex").alias("implied_sex"))
    pp = rec.filter(pl.col("r6") < 0.4).select(
        "record_id", pl.lit("passport").alias("kind"),
        pl.col("passport").alias("value_normalised"), pl.col("nationality").alias(
            "issuing_country"), pl.lit(True).alias("check_valid"))
    hub_phone = pl.format("+6681000000{}", (pl.col("row") % 5).cast(pl.String))
    phones = rec.filter(pl.col("r7") < 0.6).select(
        "record_id", pl.lit("own").alias("relation"),
        pl.when(pl.col("r7") < 0.01).then(hub_phone).otherwise(pl.col("phone")).alias("e164"))
    events = rec.filter(pl.col("r0") > 0.7).select(
        "record_id", pl.format("Compound {}", (pl.col("row") % 10).cast(pl.String))
        .alias("compound"))
    prov = rec.select("record_id", "agency", "feed", "drop_id", "source_row", "source_key")
    tables = {
        "person_record": conform(persons, "person_record"),
        "identifier": conform(pl.concat([cn, pp], how="diagonal").join(prov, on="record_id"),
                              "identifier"),
        "phone": conform(phones.join(prov, on="record_id"), "phone"),
        "event": conform(events.join(prov, on="record_id"), "event"),
    }
    truth = rec.select("agency", "feed", "source_key", "person_id")
    return tables, truth


def plain_splink(tables: dict[str, pl.DataFrame], threshold: float) -> tuple[pl.DataFrame, dict]:
    """Splink alone: same records and settings, Splink's own connected components."""
    import duckdb
    from splink import DuckDBAPI, Linker

    from transforms.resolution.settings import ResolveSettings
    from transforms.resolution.splink import _populated, match_frame

    settings = ResolveSettings()
    seconds = {}
    t = time.perf_counter()
    match = match_frame(tables, settings)
    seconds["match"] = time.perf_counter() - t
    t = time.perf_counter()
    columns = _populated(match)
    db_api = DuckDBAPI(connection=duckdb.connect())
    linker = Linker(db_api.register(match.to_arrow(), table_name="records"),
                    settings.splink_settings(columns), log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [r["sql"] for r in settings.usable(settings.prior_rules, columns)],
        recall=settings.prior_recall)
    linker.training.estimate_u_using_random_sampling(max_pairs=settings.u_max_pairs,
                                                     seed=settings.seed)
    for rule in settings.usable(settings.em_rules, columns):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule["sql"], estimate_without_term_frequencies=True, max_pairs=settings.em_max_pairs)
    seconds["splink_train"] = time.perf_counter() - t
    t = time.perf_counter()
    pred = linker.inference.predict(threshold_match_probability=settings.predict_threshold)
    seconds["splink_predict"] = time.perf_counter() - t
    t = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        pred, threshold_match_probability=threshold)
    out = pl.from_arrow(clusters.as_duckdbpyrelation().select("cluster_id", "record_id")
                        .to_arrow_table()).rename({"cluster_id": "entity_id"})
    seconds["cluster"] = time.perf_counter() - t
    return out, seconds


def _one_run(variant: str, people: int, use_febrl: bool) -> dict:
    from transforms.evaluate import evaluate
    from transforms.resolution.resolve import resolve
    from transforms.resolution.settings import ResolveSettings

    tables, truth = febrl4_via_feeds() if use_febrl else synthetic_tables(people)
    start = time.perf_counter()
    if variant == "resolve":
        result = resolve(tables)
        entity_record, seconds = result.entity_record, result.stats["seconds"]
    else:
        entity_record, seconds = plain_splink(tables, ResolveSettings().link_threshold)
    seconds["total"] = time.perf_counter() - start
    metrics = evaluate(entity_record, truth, tables["person_record"])
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": rss_mib, "records": tables["person_record"].height,
            **{k: metrics[k] for k in ("precision", "recall", "f1", "b3_f1")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--febrl", action="store_true", help="FEBRL4 instead of synthetic")
    parser.add_argument("--one", nargs=1, help=argparse.SUPPRESS)  # child process: one variant
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one_run(args.one[0], args.people, args.febrl)))
        return
    results: dict[str, list[dict]] = {"splink": [], "resolve": []}
    for _ in range(args.runs):
        for variant in results:
            cmd = [sys.executable, __file__, "--people", str(args.people), "--one", variant]
            cmd += ["--febrl"] if args.febrl else []
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
    data = "FEBRL4" if args.febrl else f"synthetic, {args.people:,} people"
    print(f"\n{data}: {results['resolve'][0]['records']:,} records, median of {args.runs} runs\n")
    stages = list(dict.fromkeys(s for v in results.values() for r in v for s in r["seconds"]))
    stages.remove("total")
    print(f"{'stage':<16}{'splink s':>10}{'resolve s':>11}")
    for stage in [*stages, "total"]:
        cells = []
        for variant in ("splink", "resolve"):
            vals = [r["seconds"][stage] for r in results[variant] if stage in r["seconds"]]
            cells.append(f"{statistics.median(vals):.2f}" if vals else "-")
        print(f"{stage:<16}{cells[0]:>10}{cells[1]:>11}")
    for key, fmt in (("peak_mib", "{:.0f}"), ("precision", "{:.4f}"), ("recall", "{:.4f}"),
                     ("f1", "{:.4f}"), ("b3_f1", "{:.4f}")):
        cells = [fmt.format(statistics.median(r[key] for r in results[v]))
                 for v in ("splink", "resolve")]
        print(f"{key:<16}{cells[0]:>10}{cells[1]:>11}")
    ratio = (statistics.median(r["seconds"]["total"] for r in results["resolve"])
             / statistics.median(r["seconds"]["total"] for r in results["splink"]))
    print(f"\nresolve / plain Splink total time: {ratio:.2f}x  (date {date.today()})")


if __name__ == "__main__":
    main()
