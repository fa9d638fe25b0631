"""Benchmark: name normalisation of 1,000,000 names (transforms/names.py).

Builds realistic input (about 50k distinct Chinese names, 20k Thai, 10k Burmese, plus Latin
passport spellings of them, repeated to N rows), then times normalise_names per script and for
the mixed column, cold cache each run (median of --runs), and compares with per-row
transliteration (no distinct step, no cache) on a 20k sample.

    .venv/bin/python bench/bench_names.py [--rows 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import time
import tracemalloc

os.environ.setdefault("PYTHAINLP_OFFLINE", "1")

import polars as pl
from rich.console import Console
from rich.table import Table

from transforms import translit_cache
from transforms.names import _burmese, _pinyin, _thai, normalise_names, sort_tokens
from transforms.scripts import _convert_if_zawgyi

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤单区仇朴"
)
SURNAMES += ["欧阳", "司马", "诸葛", "上官"]
GIVEN_CHARS = list(
    "伟芳娜秀敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉俊峰建国文斌宇浩凯健晨子涵欣怡梓轩雨萱思博佳琪嘉宏志伦晓东海波"
)
THAI_GIVEN = (  # noqa: SIM905 - a word list reads better as one string
    "สมชาย สมศรี วิชัย ประยุทธ์ สุดา มานี ปิติ ชูใจ อรุณ สมศักดิ์ บุญมา สุนทร กาญจนา นภา ธนา ศิริ พร วรรณ ชัย รัตน์ "
).split()
THAI_SYL = (  # noqa: SIM905 - a word list reads better as one string
    "ศรี สุข ใจ ดี วงศ์ สวัสดิ์ ทอง แก้ว บุญ "
    "มา จันทร์ โอชา รักษ์ ไทย เจริญ พัฒนา "
    "สมบูรณ์ ชัย ศักดิ์ พงษ์ กุล ประเสริฐ "
    "อินทร์ นาค "
).split()
THAI_TITLES = ["นาย", "นาง", "นางสาว", "", ""]
MM_SYL = (  # noqa: SIM905 - a word list reads better as one string
    "အောင် ကျော် မြင့် မင်း သန်း ထွန်း စိုး "
    "နိုင် ဝင်း မျိုး ဇော် လှိုင် သက် ထက် ခင် "
    "လွင် သိန်း စိန် ထွေး နွယ် မြတ် အေး ညွန့် "
    "ဟန် ဌေး တင် ဖြိုး ပိုင် ဝေ လင်း "
).split()
MM_TITLES = ["ဦး", "ဒေါ်", "မောင်", "", "", ""]


def build(rows: int, seed: int = 7) -> dict[str, pl.Series]:
    rnd = random.Random(seed)
    han = set()
    while len(han) < 50_000:
        n = rnd.choice([1, 2, 2])
        han.add(rnd.choice(SURNAMES) + "".join(rnd.choice(GIVEN_CHARS) for _ in range(n)))
    thai = set()
    while len(thai) < 20_000:
        surname = "".join(rnd.choice(THAI_SYL) for _ in range(rnd.choice([2, 3])))
        thai.add(f"{rnd.choice(THAI_TITLES)}{rnd.choice(THAI_GIVEN)} {surname}")
    mm = set()
    while len(mm) < 10_000:
        syllables = "".join(rnd.choice(MM_SYL) for _ in range(rnd.randint(2, 4)))
        mm.add(rnd.choice(MM_TITLES) + syllables)
    han, thai, mm = sorted(han), sorted(thai), sorted(mm)
    # Latin: passport spellings of a share of the same people, with case and order variants.
    latin_han = normalise_names(pl.Series(han[:20_000]))["name_latin"].to_list()
    latin_mm = normalise_names(pl.Series(mm[:5_000]), "none")["name_latin"].to_list()
    translit_cache.clear_cache()
    latin = [s.title() if i % 3 == 0 else s for i, s in enumerate(latin_han + latin_mm)]
    shares = {"Han": 0.5, "Thai": 0.2, "Myanmar": 0.1, "Latin": 0.2}
    pools = {"Han": han, "Thai": thai, "Myanmar": mm, "Latin": latin}
    return {
        script: pl.Series([rnd.choice(pools[script]) for _ in range(int(rows * share))])
        for script, share in shares.items()
    }


ORDER = {"Han": "family_first", "Thai": "given_first", "Myanmar": "none", "Latin": "family_first"}


def timed(fn, runs: int) -> tuple[float, float]:
    """Median seconds over cold-cache runs, and peak traced MiB of one extra run."""
    times = []
    for _ in range(runs):
        translit_cache.clear_cache()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    translit_cache.clear_cache()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(times), peak


def per_row(sample: dict[str, list[str]]) -> dict[str, float]:
    """The naive way: transliterate every row, no distinct step, no cache."""
    out = {}
    t0 = time.perf_counter()
    for name in sample["Han"]:
        _pinyin([name[:1]], surname=True), _pinyin([name[1:]], surname=False)
    out["Han"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in sample["Thai"]:
        _thai(name.split())
    out["Thai"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in sample["Myanmar"]:
        # the same work as ours: Zawgyi check (and conversion) per value, then romanisation
        _burmese(_convert_if_zawgyi([name]))
    out["Myanmar"] = time.perf_counter() - t0
    return out


def token_sort(latin: pl.Series, runs: int) -> Table:
    """The order-free key's sort: Polars' list.sort() against sort_tokens (list.eval)."""
    tokens = latin.drop_nulls().str.split(" ")
    out = Table(title=f"sorting the tokens of {len(tokens):,} Latin names, median of {runs}")
    for col in ("method", "seconds", "ratio"):
        out.add_column(col, justify="right")
    results = {}
    for method, fn in (("list.sort() (baseline)", lambda: tokens.list.sort()),
                       ("sort_tokens", lambda: pl.select(sort_tokens(pl.lit(tokens))))):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        results[method] = statistics.median(times)
    base = results["list.sort() (baseline)"]
    for method, secs in results.items():
        out.add_row(method, f"{secs:.2f}", f"{secs / base:.3f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sample", type=int, default=20_000)
    args = parser.parse_args()
    data = build(args.rows)
    table = Table(title=f"normalise_names, cold cache, median of {args.runs}")
    for col in ("input", "rows", "distinct", "seconds", "µs/row", "peak traced MiB"):
        table.add_column(col, justify="right")
    for script, series in data.items():
        secs, peak = timed(lambda s=series, o=ORDER[script]: normalise_names(s, o), args.runs)
        table.add_row(
            script, f"{len(series):,}", f"{series.n_unique():,}", f"{secs:.2f}",
            f"{secs / len(series) * 1e6:.1f}", f"{peak:.0f}",
        )  # fmt: skip
    mixed = pl.concat(list(data.values())).shuffle(seed=1)
    secs, peak = timed(lambda: normalise_names(mixed, "family_first"), args.runs)
    table.add_row(
        "all (mixed)", f"{len(mixed):,}", f"{mixed.n_unique():,}", f"{secs:.2f}",
        f"{secs / len(mixed) * 1e6:.1f}", f"{peak:.0f}",
    )  # fmt: skip
    translit_cache.clear_cache()
    normalise_names(mixed, "family_first")
    t0 = time.perf_counter()
    normalise_names(mixed, "family_first")
    warm = time.perf_counter() - t0
    per_row_us = warm / len(mixed) * 1e6
    table.add_row("all, warm cache", f"{len(mixed):,}", "", f"{warm:.2f}", f"{per_row_us:.1f}", "")
    console = Console()
    console.print(table)

    sample = {s: data[s].head(args.sample).to_list() for s in ("Han", "Thai", "Myanmar")}
    naive = per_row(sample)
    base = Table(title=f"baseline on a {args.sample:,}-row sample: per row vs per distinct token")
    for col in ("script", "per-row s", "distinct-token s", "speed-up"):
        base.add_column(col, justify="right")
    for script, secs in naive.items():
        translit_cache.clear_cache()
        t0 = time.perf_counter()
        normalise_names(pl.Series(sample[script]), ORDER[script])
        ours = time.perf_counter() - t0
        base.add_row(script, f"{secs:.2f}", f"{ours:.2f}", f"{secs / ours:.1f}x")
    console.print(base)
    console.print(token_sort(normalise_names(mixed, "family_first")["name_latin"], args.runs))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"process peak RSS (ru_maxrss): {rss:.0f} MiB")


if __name__ == "__main__":
    main()
