"""Resolution on Splink's Spark backend: the same declaration, the same entities.

Spark runs in local mode on this machine's cores (``transforms.resolution.backends``), started
once for the module (six seconds). Three things are checked:

- every comparison level, rendered in Spark's SQL (``transforms.resolution.dialect``), puts
  each pair of records in the same level as DuckDB does: generated people in three scripts,
  and hand-made edge cases for the rewritten functions. The exception is documented and
  checked pair by pair: the two engines' Jaro-Winkler functions differ on some longer strings;
- generated drops resolve to the same entities, links and review queue on both backends,
  with the declared priors and with a model trained on DuckDB (term frequencies included);
- a model trained on Spark is kept in DuckDB's SQL, so incremental runs continue it.

Training itself is the one documented difference: Splink estimates u on a subset of pairs
chosen by hashing record ids, and DuckDB's and Spark's hash functions differ, so the two engines
train slightly different models (see docs/scale.md). The test measures that difference against
the generator's truth instead of asserting it away.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from fusionlake.synth import generate
from transforms.evaluate import evaluate
from transforms.resolution.backends import SparkBackend
from transforms.resolution.dialect import to_spark
from transforms.resolution.resolve import resolve
from transforms.resolution.settings import ResolveSettings
from transforms.resolution.splink import KeptScorer, match_frame, rule_sql

pytestmark = pytest.mark.slow

_SPEC = importlib.util.spec_from_file_location(
    "bench_generated", Path(__file__).resolve().parents[1] / "bench" / "generated.py")
generated = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(generated)

SPARK = ResolveSettings(backend="spark")
# training in these tests samples u from 200,000 pairs, not 2,000,000: a third of the time on
# Spark, where u sampling is most of a training (both engines get the same plan)
TRAIN = ResolveSettings(u_max_pairs=2e5)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """The session resolution uses, with Splink's functions registered (a tenth of the
    machine's memory: the test data are small, and other xdist workers, each with its own
    session, run beside it)."""
    return SparkBackend(tmp_path_factory.mktemp("spark"), memory_fraction=0.1).spark


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """500 generated people (about 870 records: scored with the declared priors)."""
    out = tmp_path_factory.mktemp("generated")
    generate(500, 3, out)
    tables, truth, _raw = generated.load_generated(out)
    return tables, truth


def _partition(entity_record: pl.DataFrame) -> set[frozenset[str]]:
    groups = entity_record.group_by("entity_id").agg("record_id")["record_id"].to_list()
    return {frozenset(g) for g in groups}


def _levels(settings: ResolveSettings, columns: set[str]) -> dict[str, list[str]]:
    compiled = settings.splink_settings(columns)
    return {c["output_column_name"]: [lv["sql_condition"] for lv in c["comparison_levels"]]
            for c in compiled["comparisons"]}


def _gamma(conditions: list[str], render) -> str:
    whens = " ".join(f"WHEN {render(c)} THEN {i}" for i, c in enumerate(conditions)
                     if c != "ELSE")
    return f"CASE {whens} ELSE {len(conditions) - 1} END"


def _pairs(match: pl.DataFrame, edge: pl.DataFrame) -> pl.DataFrame:
    """Pairs of records that share a birth year or a phonetic name key (near misses of every
    kind), a slice of all pairs, and the hand-made pairs of ``edge``."""
    left = match.rename({c: f"{c}_l" for c in match.columns})
    right = match.rename({c: f"{c}_r" for c in match.columns})
    cross = left.join(right, how="cross").filter(pl.col("record_id_l") < pl.col("record_id_r"))
    near = cross.filter((pl.col("birth_year_l") == pl.col("birth_year_r"))
                        | (pl.col("name_key_phonetic_l") == pl.col("name_key_phonetic_r")))
    return pl.concat([near, cross.gather_every(97), edge], how="diagonal_relaxed").unique(
        ["record_id_l", "record_id_r"], keep="first", maintain_order=True)


def _edge_cases(columns: list[str]) -> pl.DataFrame:
    """Pairs that exercise what was rewritten for Spark: byte length against character
    length (Thai, Burmese, hanzi), one and two edits with transpositions, empty strings, and
    arrays of names that share one or none."""
    ids = [("G12345678", "G12345687"), ("G12345678", "G21345678"), ("G1234", "G1243X"),
           ("E9876543", "E98765"), ("", "A"), ("", ""), ("ก1234", "ก1243"), ("张三", "张四"),
           ("မောင်", "မောင"), ("123456789012345678", "123456789012345687"),
           ("110101199003077777", "110101199003071777"), ("AB", "BA"), ("ABC", "CBA")]
    names = [("somchai", "somchia"), ("ซมชาย", "สมชาย"), ("张伟", "张 伟"), ("aung", "aung"),
             ("", "x"), ("mary ann", "mary anne"), ("john", "jon")]
    rows = []
    for i, (a, b) in enumerate(ids):
        rows.append({"record_id_l": f"e{i}a", "record_id_r": f"e{i}b", "national_id_l": a,
                     "national_id_r": b, "passport_no_l": b, "passport_no_r": a,
                     "other_id_l": a, "other_id_r": b})
    for i, (a, b) in enumerate(names):
        rows.append({"record_id_l": f"n{i}a", "record_id_r": f"n{i}b",
                     "name_key_sorted_l": a, "name_key_sorted_r": b, "given_name_l": a,
                     "given_name_r": b, "family_name_l": "x", "family_name_r": "x",
                     "name_key_alt_l": b, "name_key_alt_r": a,
                     "name_keys_l": [a, "z"], "name_keys_r": [b] if i % 2 else [b, "z"]})
    days = [(date(1990, 1, 2), date(1990, 2, 1)), (date(1990, 1, 2), date(1990, 1, 3)),
            (date(1990, 12, 31), date(1991, 12, 31)), (date(2000, 2, 29), date(2001, 2, 28))]
    for i, (a, b) in enumerate(days):
        rows.append({"record_id_l": f"d{i}a", "record_id_r": f"d{i}b", "birth_date_l": a,
                     "birth_date_r": b, "birth_date_precision_l": "day",
                     "birth_date_precision_r": "day" if i % 2 else "month"})
    frame = pl.DataFrame(rows, infer_schema_length=None)
    return frame.select([c for c in frame.columns if c.removesuffix("_l").removesuffix("_r")
                         in columns])


# the Jaro-Winkler thresholds of the comparisons, and the columns they compare
_JW_THRESHOLDS = (0.8, 0.88, 0.92)
_JW_COLUMNS = [("name_key_sorted", "name_key_sorted"), ("given_name", "given_name"),
               ("family_name", "family_name"), ("name_key_alt", "name_key_sorted"),
               ("name_key_sorted", "name_key_alt"), ("name_key_alt", "name_key_alt")]


def _jw(pairs_table: str, function: str) -> str:
    return "SELECT record_id_l, record_id_r, " + ", ".join(
        f"{function}({a}_l, {b}_r) AS jw_{i}" for i, (a, b) in enumerate(_JW_COLUMNS)
    ) + f" FROM {pairs_table}"


def test_every_comparison_level_puts_each_pair_where_duckdb_does(people, spark):
    """Exactly, except where the two engines' Jaro-Winkler functions disagree across a
    threshold: DuckDB's and the one in Splink's jar count Jaro's matching characters
    differently on some longer strings ('GUI LI TIAN' and 'LI LIU MIN': 0.8008 against
    0.7799), so such a pair lands one level apart. Each difference must be one of those."""
    tables, _truth = people
    match = match_frame(tables, ResolveSettings())
    columns = {c for c in match.columns if match[c].null_count() < match.height}
    pairs = _pairs(match, _edge_cases(match.columns))
    levels = _levels(ResolveSettings(), columns)
    assert set(levels) >= {"name", "birth_date", "national_id", "passport_no"}
    arrow = pairs.to_arrow(compat_level=pl.CompatLevel.oldest())

    duck = duckdb.connect()
    duck.register("pairs", arrow)
    on_duckdb = pl.from_arrow(duck.sql(
        "SELECT record_id_l, record_id_r, " + ", ".join(
            f"{_gamma(conds, lambda s: s)} AS gamma_{name}" for name, conds in levels.items())
        + " FROM pairs").to_arrow_table())
    spark.createDataFrame(arrow).createOrReplaceTempView("fl_test_pairs")
    on_spark = pl.from_arrow(spark.sql(
        "SELECT record_id_l, record_id_r, " + ", ".join(
            f"{_gamma(conds, to_spark)} AS gamma_{name}" for name, conds in levels.items())
        + " FROM fl_test_pairs").toArrow())

    key = ["record_id_l", "record_id_r"]
    assert on_duckdb.height == on_spark.height == pairs.height > 10_000
    for name in levels:  # the pairs reach several levels of every comparison
        reached = set(on_duckdb[f"gamma_{name}"].unique().to_list())
        assert len(reached) >= min(3, len(levels[name])), (name, reached)
    joined = on_duckdb.join(on_spark, on=key, suffix="_spark")
    for name in levels:
        differ = joined.filter(pl.col(f"gamma_{name}") != pl.col(f"gamma_{name}_spark"))
        if name != "name":  # no Jaro-Winkler level: identical
            assert differ.height == 0, (name, differ)
            continue
        assert differ.height < 0.005 * pairs.height, differ
        jw = pl.from_arrow(duck.sql(_jw("pairs", "jaro_winkler_similarity")).to_arrow_table())
        jw_spark = pl.from_arrow(spark.sql(_jw("fl_test_pairs", "jaro_winkler")).toArrow())
        straddle = pl.any_horizontal(
            (pl.col(f"jw_{i}") >= t) != (pl.col(f"jw_{i}_spark") >= t)
            for i in range(len(_JW_COLUMNS)) for t in _JW_THRESHOLDS)
        explained = (differ.select(key).join(jw, on=key)
                     .join(jw_spark, on=key, suffix="_spark").filter(straddle))
        assert explained.height == differ.height, differ.join(explained, on=key, how="anti")


def test_the_rewritten_functions_mean_what_duckdb_means(spark):
    """Each function spelled out for Spark, on values where a wrong spelling would show."""
    cases = {
        "strlen('ก1')": 4, "strlen('')": 0, "hamming('abcd', 'abdc')": 2,
        "hamming('ก2', 'ก3')": 1, "CAST(list_has_any(['a', 'b'], ['c', 'b']) AS INT)": 1,
        "CAST(list_has_any(['a'], ['c']) AS INT)": 0,
        "CAST(jaro_winkler_similarity('martha', 'marhta') * 1000 AS INT)": 961,
        "CAST(damerau_levenshtein('abcd', 'acbd') AS INT)": 1,
        "date_diff('day', DATE '2020-01-01', DATE '2020-03-01')": 60,
        "7 // 2": 3, "CAST(contains('abc', '') AS INT)": 1,
        "CAST(strftime(DATE '1990-01-02', '%Y%m%d') AS INT)": 19900102,
    }
    duck = duckdb.connect()
    for sql, want in cases.items():
        assert duck.sql(f"SELECT {sql}").fetchall()[0][0] == want, sql
        assert spark.sql(f"SELECT {to_spark(sql)}").collect()[0][0] == want, (sql, to_spark(sql))


def test_generated_drops_resolve_to_the_same_entities_on_both_backends(people, spark):
    tables, truth = people
    on_duckdb = resolve(tables)
    on_spark = resolve(tables, settings=SPARK)
    assert on_duckdb.stats["model"] == on_spark.stats["model"] == "declared priors"
    assert _partition(on_spark.entity_record) == _partition(on_duckdb.entity_record)
    key = ["record_id_l", "record_id_r"]
    for table in ("record_link", "review_pair"):
        a, b = getattr(on_duckdb, table), getattr(on_spark, table)
        assert a.height == b.height > 0, table
        joined = a.sort(key).join(b.sort(key), on=key, how="full", coalesce=True)
        assert joined.height == a.height, table  # the same pairs
    links = on_duckdb.record_link.join(on_spark.record_link, on=key, suffix="_spark")
    assert (links["rule"] == links["rule_spark"]).all()
    # a probability differs only where a Jaro-Winkler level did (see the test above)
    moved = (links["match_probability"] - links["match_probability_spark"]).abs() > 1e-9
    assert moved.sum() < 0.02 * links.height, moved.sum()
    m = evaluate(on_spark.entity_record, truth, tables["person_record"])
    assert m["precision"] >= 0.99 and m["f1"] >= 0.97, m


def test_blocks_left_out_are_left_out_on_spark_as_on_duckdb(spark):
    """The blocks to leave out are found in DuckDB for both engines; Spark gets the rules with
    ``AND NOT l.fl_skip_<rule>`` rendered and the flag columns in its records. Template rows
    copied 13 (a block of 169 pairs, over 150), 12, 10, 9 and 5 times: the 13 copies are
    oversize, and the copies' pairs (236 with the records' own one) pass a budget of 150 until
    the 13 and the 12 go. Both engines give the same entities, links and review queue."""
    spec = importlib.util.spec_from_file_location(
        "fixtures_resolve", Path(__file__).parent / "transforms" / "test_resolve.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    sizes = {"t0": ("AUNG AUNG", 12), "t1": ("MAUNG MYA", 10), "t2": ("KYAW ZAW", 9),
             "t3": ("TUN TUN", 5), "t4": ("SOE MIN", 13)}
    rows = fixtures.BASE + [
        fixtures.person(f"{tag}:{i:02d}", name, date(1980 + k, 1, 2), nationality="MM", drop=tag)
        for k, (tag, (name, n)) in enumerate(sizes.items()) for i in range(1, n + 1)]
    tables = fixtures.tables(rows)
    budget = ResolveSettings(block_max_pairs=150, identical_pairs_per_record=0)
    on_duckdb = resolve(tables, settings=budget)
    on_spark = resolve(tables, settings=budget.with_(backend="spark"))
    left_out = {tag for tag in sizes
                if on_duckdb.entity_record.filter(pl.col("record_id").str.starts_with(tag))[
                    "entity_id"].n_unique() == sizes[tag][1]}
    assert left_out == {"t0", "t4"}
    notes = on_duckdb.stats["block_notes"]
    assert any("more than block_max_pairs=150" in n for n in notes), notes
    assert any("more pairs than identical_budget" in n for n in notes), notes
    assert on_spark.stats["block_notes"] == notes
    assert _partition(on_spark.entity_record) == _partition(on_duckdb.entity_record)
    key = ["record_id_l", "record_id_r"]
    for table, columns in (("record_link", [*key, "rule"]),
                           ("review_pair", [*key, "priority", "reason"])):
        a, b = (getattr(r, table).select(columns).sort(key) for r in (on_duckdb, on_spark))
        assert a.height > 0 and a.equals(b), table
    assert on_spark.stats["state"].model.identical == on_duckdb.stats["state"].model.identical


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """700 generated people (about 1,200 records: enough to train) resolved on DuckDB."""
    out = tmp_path_factory.mktemp("trained")
    generate(700, 3, out)
    tables, truth, _raw = generated.load_generated(out)
    return tables, truth, resolve(tables, settings=TRAIN)


def test_a_model_trained_on_duckdb_scores_the_same_on_spark(trained, spark):
    """Term frequencies, trained weights and the kept blocking rules, through Spark."""
    tables, _truth, on_duckdb = trained
    model = on_duckdb.stats["state"].model
    assert on_duckdb.stats["model"] == "trained on the data"
    assert model.tf_tables  # term frequencies are registered in Spark too
    again = resolve(tables, kept=model)
    on_spark = resolve(tables, settings=SPARK, kept=model)
    assert _partition(on_spark.entity_record) == _partition(again.entity_record)
    assert on_spark.review_pair.height == again.review_pair.height


def test_a_model_trained_on_spark_is_kept_in_duckdb_sql_for_incremental_runs(trained, spark):
    tables, truth, on_duckdb = trained
    on_spark = resolve(tables, settings=TRAIN.with_(backend="spark"))
    assert on_spark.stats["model"] == "trained on the data"
    kept = on_spark.stats["state"].model
    saved = json.loads(kept.model_json)
    declared = ResolveSettings().splink_settings(set(kept.match_schema))
    assert saved["sql_dialect"] == "duckdb"
    conditions = {lv["sql_condition"] for c in saved["comparisons"]
                  for lv in c["comparison_levels"]}
    assert "jaro_winkler(" not in " ".join(conditions)  # none of Spark's spelling
    assert conditions <= {lv["sql_condition"] for c in declared["comparisons"]
                          for lv in c["comparison_levels"]}
    rules = rule_sql(saved["blocking_rules_to_generate_predictions"])
    assert rules and set(rules) <= set(declared["blocking_rules_to_generate_predictions"])

    # an incremental run scores new records with it on DuckDB: each record against its copy
    some = on_spark.stats["state"].match.head(50)
    copies = some.with_columns(pl.col("record_id") + "-copy")
    with KeptScorer(kept, ResolveSettings()) as scorer:
        pairs = scorer.score(pl.concat([some, copies]))
    found = pairs.filter(pl.col("record_id_l") + "-copy" == pl.col("record_id_r"))
    assert found.height >= 45 and found["match_probability"].min() > 0.9, found

    # the documented difference: u estimated on engine-chosen subsets of pairs
    a = evaluate(on_duckdb.entity_record, truth, tables["person_record"])
    b = evaluate(on_spark.entity_record, truth, tables["person_record"])
    assert b["precision"] >= 0.99 and b["f1"] >= 0.97, b
    assert abs(a["f1"] - b["f1"]) < 0.01, (a, b)
    same = _partition(on_duckdb.entity_record) & _partition(on_spark.entity_record)
    records = sum(len(g) for g in same)
    assert records >= 0.98 * on_duckdb.entity_record.height


def test_a_pipeline_run_resolves_on_spark_and_the_next_continues_on_duckdb(tmp_path, spark):
    """``FUSIONLAKE_RESOLVE_BACKEND=spark``: the full resolutions of a run score on Spark; the
    next run's few new records are scored incrementally, on DuckDB, with the model kept."""
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.run import run

    gen = tmp_path / "gen"
    generate(500, 5, gen)
    lines = (gen / "mm_police/detainees/detainees.jsonl").read_text(
        encoding="utf-8").splitlines(keepends=True)
    first, later = tmp_path / "detainees_1.jsonl", tmp_path / "detainees_2.jsonl"
    first.write_text("".join(lines[:-20]), encoding="utf-8")
    later.write_text("".join(lines[-20:]), encoding="utf-8")
    lake = tmp_path / "lake"
    store = open_store(str(lake))
    for feed_dir in sorted(p for p in gen.glob("*/*") if p.is_dir()):
        files = [first] if feed_dir.name == "detainees" else sorted(feed_dir.iterdir())
        deliver(store, feed_dir.parent.name, feed_dir.name, files)
    settings = Settings(lake=str(lake), resolve_backend="spark")

    one = run(settings)
    assert not one.problems, one.problems
    modes = one.resolution_stats["resolve mode"]
    assert modes and all(m["mode"] == "full" and m["why"].endswith("(scored on spark)")
                         for m in modes.values()), modes

    deliver(store, "mm_police", "detainees", [later])
    two = run(settings)
    assert not two.problems, two.problems
    modes = two.resolution_stats["resolve mode"]
    assert any(m["mode"] == "incremental" for m in modes.values()), modes
    assert two.resolution_stats["counts"]["records"] == (
        one.resolution_stats["counts"]["records"] + 20)


def test_settings_of_the_resolve_backend(monkeypatch, tmp_path, capsys):
    from fusionlake import cli
    from fusionlake.lake.settings import Settings, SettingsError

    monkeypatch.delenv("FUSIONLAKE_RESOLVE_BACKEND", raising=False)
    assert Settings.from_env().resolve_backend == "duckdb"
    monkeypatch.setenv("FUSIONLAKE_RESOLVE_BACKEND", " Spark ")
    assert Settings.from_env().resolve_backend == "spark"
    Settings.from_env().check_resolve_backend()  # PySpark and Java are here

    monkeypatch.setenv("FUSIONLAKE_RESOLVE_BACKEND", "polars")
    lake = tmp_path / "lake"
    assert cli.main(["run", "--lake", str(lake)]) == cli.EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        "fusionlake run: FUSIONLAKE_RESOLVE_BACKEND='polars' is not one of duckdb, spark\n")
    assert not lake.exists()  # refused before anything ran

    spark_settings = Settings(resolve_backend="spark")
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on it
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(SettingsError, match="needs a Java runtime"):
        spark_settings.check_resolve_backend()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyspark" else real(name, *a))
    with pytest.raises(SettingsError, match=r"install fusionlake with its `spark` extra"):
        spark_settings.check_resolve_backend()


def test_the_backend_bench_prints_both_engines_with_their_agreement(tmp_path):
    """bench/bench_backends.py at a size that runs in seconds: a row per engine, the ratio,
    and the share of records whose entity is the same on both."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "bench_backends.py"
    done = subprocess.run([sys.executable, str(script), "--people", "200", "--runs", "1"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split(" | ")[2]: line.split(" | ") for line in done.stdout.splitlines()
            if line.startswith("200 |")}
    assert set(rows) == {"duckdb", "spark"}, done.stdout
    assert float(rows["spark"][-1].rstrip("%")) > 90  # same entity, in percent
    assert "200 people: Spark / DuckDB whole resolution" in done.stdout


def test_spark_configuration_of_the_deployment_is_read_before_defaults_are_given(
        tmp_path, monkeypatch):
    from transforms.resolution.backends import _spark_configuration

    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert "spark.driver.memory" not in _spark_configuration()
    (tmp_path / "spark-defaults.conf").write_text("spark.master spark://m:7077\n"
                                                  "spark.driver.memory 3g\n")
    assert "spark.driver.memory 3g" in _spark_configuration()
    monkeypatch.delenv("SPARK_CONF_DIR")
    monkeypatch.setenv("SPARK_HOME", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--driver-memory 2g pyspark-shell")
    assert "--driver-memory 2g" in _spark_configuration()


def test_no_audience_mart_holds_a_row_it_may_not_see_when_spark_resolves(spark, tmp_path):
    """The leak rule of tests/test_leaks.py with every resolution on Spark. One session
    resolves the visibility groups one after the other, and Splink gives its tables the same
    names in each (``__splink__df_concat`` ...): a table or cached frame left from one group
    must not reach the next. Each agency's mart must equal the mart of a lake that received
    only its rows, resolved on Spark too."""
    from test_leaks import AGENCIES, _assert_rule, _publish_all, _with_releasability, staged_lake

    from fusionlake.lake import zones
    from fusionlake.pipeline import resolve

    lake = _with_releasability(staged_lake(tmp_path / "staged"), tmp_path / "lake", 11, 0.5)
    on_spark = resolve.Options(backend="spark")  # (_publish_all checks each group was scored there)
    assert sorted(_publish_all(lake, tmp_path / "work", options=on_spark)) == ["all", *AGENCIES]
    resolved = {zones.resolved_as(lake, a) for a in ("all", *AGENCIES)}
    assert len(resolved) == 4, resolved  # four visibility groups, resolved in turn
    _assert_rule(lake, tmp_path, AGENCIES, options=on_spark)
