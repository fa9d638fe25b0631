"""Benchmark the normalisers and the feed mapping on a synthetic 1,000,000-row drop.

Usage:
    .venv/bin/python bench/bench_normalise.py [--rows 1000000] [--runs 3] [--only NAME ...]

Each case runs in its own Python process (so one case's peak memory does not hide another's) on
the same synthetic data, written once to a temporary parquet file. The table shows the median
wall time of ``--runs`` runs, rows per second, and the process's peak resident memory above what
it held before the call (sampled every 5 ms: Polars allocates outside Python, so tracemalloc
would not see it, and ru_maxrss cannot be reset after loading the input). "cpu s" is the
process's CPU time (all Polars threads) and "load" the 1-minute load average after the case: on
a shared machine wall time depends on the neighbours, CPU time much less.

Synthetic data: valid CN resident IDs (2% in the old 15-digit form),
TH national IDs, UnionPay/Visa cards, IMEIs, Burmese and Latin NRCs, TRC20 wallets (20,000
distinct, reused as in real fraud data), Chinese-form and Buddhist-Era dates, Thai and Chinese
phone numbers with 2 per cell in a fifth of the rows, Chinese names (40 surnames, 1-2 given
characters from 60: about 150,000 distinct); about 1 in 50 values of each column is
corrupted so the failure paths are timed too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import base58
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.identifiers import CN_PROVINCES

_CN_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _cn_id(rng: random.Random) -> str:
    body = (
        rng.choice(sorted(CN_PROVINCES))
        + f"{rng.randrange(100, 10000):04d}"
        + f"{rng.randrange(1950, 2005)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        + f"{rng.randrange(1000):03d}"
    )
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _CN_W, strict=True)) % 11]


def _th_id(rng: random.Random) -> str:
    body = str(rng.randrange(1, 9)) + f"{rng.randrange(10**11):011d}"
    s = sum(int(c) * (13 - i) for i, c in enumerate(body))
    return body + str((11 - s % 11) % 10)


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d >= 5 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


_NRC_TOWNS = [("12", "ဥကမ", "OUKAMA"), ("3", "မဝတ", "MAWATA"), ("13", "တလန", "TALANA"),
              ("10", "မလမ", "MALAMA"), ("14", "ပသန", "PATHANA")]  # fmt: skip
_MM_DIGITS = str.maketrans("0123456789", "၀၁၂၃၄၅၆၇၈၉")
_THAI_MONTHS = ["ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.",
                "พ.ย.", "ธ.ค."]  # fmt: skip


_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘")
_GIVEN = list(
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬芳燕彩春菊兰凤洁梅琳素云莲真"
)


def _nrc(rng: random.Random) -> str:
    state, burmese, latin = rng.choice(_NRC_TOWNS)
    number = f"{rng.randrange(10**6):06d}"
    if rng.random() < 0.5:
        return f"{state}/{latin}(N){number}"
    return f"{state}/{burmese}(နိုင်){number}".translate(_MM_DIGITS)


def make_data(rows: int, seed: int = 7) -> pl.DataFrame:
    """The synthetic drop: one column per normaliser input (see the module docstring)."""
    rng = random.Random(seed)
    wallets = [
        base58.b58encode_check(bytes([0x41]) + rng.randbytes(20)).decode() for _ in range(20_000)
    ]

    def corrupt(value: str) -> str:
        return value[:-1] + "?" if rng.random() < 0.02 else value

    cn, th, card, imei, nrc, wallet, birth_cn, birth_th, phone = ([] for _ in range(9))
    for i in range(rows):
        cid = _cn_id(rng)
        cn.append(corrupt(cid[:6] + cid[8:17] if i % 50 == 0 else cid))
        th.append(corrupt(_th_id(rng)))
        prefix = "62" if rng.random() < 0.6 else "4"
        digits = f"{rng.randrange(10**15):015d}"[: 18 - len(prefix)]
        card.append(corrupt(_luhn_complete(prefix + digits)))
        imei.append(corrupt(_luhn_complete(f"{rng.randrange(10**14):014d}")))
        nrc.append(corrupt(_nrc(rng)))
        wallet.append(corrupt(rng.choice(wallets)))
        y, m, d = rng.randrange(1950, 2005), rng.randrange(1, 13), rng.randrange(1, 29)
        birth_cn.append(corrupt(f"{y}年{m}月{d}日"))
        birth_th.append(
            f"{d:02d}/{m:02d}/{y + 543}" if i % 2 else f"{d} {_THAI_MONTHS[m - 1]} {y + 543}"
        )
        own = f"08{rng.randrange(10):d}-{rng.randrange(1000):03d}-{rng.randrange(10000):04d}"
        if i % 5 == 0:
            own += (
                f"; +86 13{rng.randrange(10)} {rng.randrange(10**4):04d} {rng.randrange(10**4):04d}"
            )
        phone.append(own)
    return pl.DataFrame(
        {
            "source_row": pl.int_range(1, rows + 1, eager=True),
            "cn_resident_id": cn,
            "th_national_id": th,
            "bank_card": card,
            "imei": imei,
            "mm_nrc": nrc,
            "crypto_wallet": wallet,
            "birth_cn": birth_cn,
            "birth_th": birth_th,
            "phone": phone,
            "name": [
                rng.choice(_SURNAMES) + "".join(rng.choices(_GIVEN, k=rng.choice((1, 2))))
                for _ in range(rows)
            ],
        }
    )


# ---------------------------------------------------------------------------------------------
# Cases: each is (name, function of the loaded frame)


@dataclass
class _Feed:
    """Stand-in with the attributes of fusionlake.lake.feeds.Feed that to_canonical reads."""

    agency: str = "cn_mps"
    feed: str = "bench"
    source_key: str = "source_key"
    record: str = "person"
    role: str | None = "suspect"
    releasable_to: list[str] = field(default_factory=lambda: ["cn_mps", "th_imm", "mm_police"])
    defaults: dict = field(default_factory=lambda: {"phone_region": "TH", "nationality": "CN"})
    event: dict | None = field(default_factory=lambda: {"type": "arrest", "country": "CN"})
    columns: dict = field(
        default_factory=lambda: {
            "source_key": {"to": "source_key"},
            "birth_cn": {"to": "person.birth_date", "formats": ["chinese"]},
            "cn_resident_id": {"to": "identifier", "kind": "cn_resident_id"},
            "mm_nrc": {"to": "identifier", "kind": "mm_nrc"},
            "phone": {"to": "phone", "split": ";"},
            "bank_card": {"to": "account", "kind": "bank_card"},
            "crypto_wallet": {"to": "account", "kind": "crypto_wallet"},
            "birth_th": {
                "to": "event.date",
                "calendar": "buddhist",
                "formats": ["%d/%m/%Y", "thai_month"],
            },
        }
    )


def _cases() -> dict:
    from transforms.accounts import normalise_accounts
    from transforms.dates import parse_dates
    from transforms.identifiers import is_valid, normalise_identifiers
    from transforms.phones import normalise_phones

    def canonical(df: pl.DataFrame, names: bool = False):
        from transforms.canonical import to_canonical

        frame = df.with_columns(pl.col("source_row").cast(pl.String).alias("source_key"))
        feed = _Feed()
        if names:
            feed.columns = {**feed.columns, "name": {"to": "person.name",
                                                     "name_order": "family_first"}}  # fmt: skip
        else:
            frame = frame.drop("name")
        return to_canonical(frame, feed, "bench-drop")

    return {
        "is_valid cn_resident_id": lambda df: is_valid("cn_resident_id", df["cn_resident_id"]),
        "identifiers cn_resident_id": lambda df: normalise_identifiers(
            df["cn_resident_id"], "cn_resident_id"
        ),
        "identifiers th_national_id": lambda df: normalise_identifiers(
            df["th_national_id"], "th_national_id"
        ),
        "identifiers imei": lambda df: normalise_identifiers(df["imei"], "imei"),
        "identifiers mm_nrc": lambda df: normalise_identifiers(df["mm_nrc"], "mm_nrc"),
        "accounts bank_card": lambda df: normalise_accounts(df["bank_card"], "bank_card"),
        "accounts crypto_wallet": lambda df: normalise_accounts(
            df["crypto_wallet"], "crypto_wallet"
        ),
        "dates chinese": lambda df: parse_dates(df["birth_cn"], ["chinese"]),
        "dates buddhist": lambda df: parse_dates(
            df["birth_th"], ["%d/%m/%Y", "thai_month"], "buddhist"
        ),
        "phones (1.2 per row)": lambda df: normalise_phones(df["phone"], "TH", ";"),
        "to_canonical (no names)": canonical,
        "to_canonical (Han names)": lambda df: canonical(df, names=True),
    }


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class _PeakRss:
    """Samples the process's resident memory every 5 ms in a thread and keeps the peak.

    ru_maxrss cannot be reset and would include reading the input, so the peak above the
    resident size at start is sampled instead.
    """

    def __enter__(self) -> _PeakRss:
        self.base = self.peak = _rss_kib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_kib())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_kib())


def _child(case: str, data: str, runs: int) -> None:
    df = pl.read_parquet(data)
    fn = _cases()[case]
    times, cpus, peaks = [], [], []
    for _ in range(runs):
        with _PeakRss() as rss:
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(df)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        peaks.append((rss.peak - rss.base) / 1024)
        del out
    print(json.dumps({"case": case, "seconds": statistics.median(times),
                      "cpu": statistics.median(cpus), "peak_mib": max(peaks),
                      "load": os.getloadavg()[0]}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="case names (substring match)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.data, args.runs)
        return
    cases = [c for c in _cases() if not args.only or any(o in c for o in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "drop.parquet"
        t0 = time.perf_counter()
        make_data(args.rows).write_parquet(data)
        print(f"synthetic drop: {args.rows:,} rows in {time.perf_counter() - t0:.1f} s; "
              f"median of {args.runs} runs, each case in its own process")  # fmt: skip
        header = (
            f"{'case':<30} {'seconds':>9} {'cpu s':>8} {'rows/s':>12} {'peak MiB':>9} {'load':>5}"
        )
        print(header)
        print("-" * len(header))
        for case in cases:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", case, "--data", str(data),
                 "--runs", str(args.runs)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{case:<30} failed: {last}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{case:<30} {r['seconds']:>9.2f} {r['cpu']:>8.2f} "
                  f"{args.rows / r['seconds']:>12,.0f} {r['peak_mib']:>9.0f} "
                  f"{r['load']:>5.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
