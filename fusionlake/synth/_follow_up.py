"""A follow-up delivery: one small later drop of mm_police/detainees for an existing scenario.

What a scheduled delivery brings after the first drops: a new export of the Myanmar Police
Force's detainee register from a later raid. About half of its rows are re-detentions of people
already in the scenario (workers and organisers some agency has seen), written the way that
agency writes them, with the same noise as the first drop (:func:`_feeds.detainees` writes both;
only the two lines cut short are not planted, so the drop's rows are the rows asked for); the
rest are people never seen before, drawn like the first population and numbered after it.

The raid is in early 2026, so its case numbers start ``MWD-2026-`` and never collide with the
first drop's ``MWD-2025-``: the feed supersedes by source key, and a colliding key would replace
an earlier detainee instead of adding one. Its draws come from their own random stream, so the
first drops are the same bytes whether or not a follow-up is made.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from fusionlake.synth import _feeds, _population
from fusionlake.synth.params import Params

FEED = "mm_police/detainees"
#: the follow-up's file, inside out/<agency>/<feed>/ beside the first drop's detainees.jsonl
FILE = "detainees-follow-up.jsonl"
#: its case numbers (the first drop's are MWD-2025-NNNNNN)
KEY_PREFIX = "MWD-2026-"
#: the raid it reports (detained_on)
WINDOW = ("2026-01-05", "2026-02-27")
#: share of rows that are people already in the scenario
KNOWN_SHARE = 0.5
#: the follow-up's random stream: (seed, this) seeds it, independent of the first drops' stream
STREAM = 1


def rng_for(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, STREAM])))


def _new_people(count: int, first_number: int, rng: np.random.Generator,
                p: Params) -> pl.DataFrame:
    """``count`` people never seen before: workers and organisers (victims are not detained),
    person ids numbered on from ``first_number``."""
    drawn = pl.DataFrame()
    size = 2 * count + 20
    while True:  # victims are ~40% of a draw: twice as many is nearly always enough
        drawn = _population.build(size, rng, p).filter(pl.col("role") != "victim")
        if drawn.height >= count:
            break
        size *= 2
    numbers = pl.int_range(first_number, first_number + count, eager=True)
    return drawn.head(count).with_columns(
        ("P" + numbers.cast(pl.String).str.zfill(7)).alias("person_id"))


def detainees(pop: pl.DataFrame, jr: pl.DataFrame, rows: int, rng: np.random.Generator,
              p: Params) -> pl.DataFrame:
    """The follow-up drop's frame: exactly ``rows`` rows in mm_police/detainees' columns, plus
    the private ``_pid`` (the person behind each row).

    Args:
        pop: the scenario's population (``_population.build``).
        jr: its journeys (``_feeds.journeys``): who some agency has seen.
        rows: rows of the drop (at least 1).
        rng: the follow-up's own stream (:func:`rng_for`).
        p: the scenario's parameters.
    """
    if rows < 1:
        raise ValueError(f"a follow-up drop has at least 1 row, got {rows}")
    seen = np.flatnonzero((jr["in_mm"] | jr["in_th"] | jr["in_cn"]).to_numpy()
                          & (pop["role"] != "victim").to_numpy())
    n_known = min(round(rows * KNOWN_SHARE), len(seen))  # a tiny scenario may have too few
    known = pop[np.sort(rng.choice(seen, size=n_known, replace=False))] if n_known else pop[:0]
    new = _new_people(rows - n_known, pop.height + 1, rng, p)
    people = pl.concat([known, new.select(pop.columns)])
    lo, hi = (np.datetime64(d) for d in WINDOW)
    raid = lo + rng.integers(0, int((hi - lo).astype(int)) + 1, people.height).astype(
        "timedelta64[D]")
    # _feeds.detainees reads who was detained (in_mm) and when (mm_date) from the journeys
    journeys = pl.DataFrame({"i": np.arange(people.height), "in_mm": True,
                             "mm_date": raid.astype("datetime64[ms]")}).with_columns(
        pl.col("mm_date").cast(pl.Date))
    frame = _feeds.detainees(people, journeys, rng, p)
    # The register lists a few people twice and repeats a few rows (the usual noise), so the
    # frame has a few more rows than people: the drop is its first ``rows`` (a repeated row
    # follows its original, so none is cut from it).
    return frame.head(rows).with_columns(
        pl.col("case_no").str.replace(r"^MWD-2025-", KEY_PREFIX))
