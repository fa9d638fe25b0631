"""Vectorised identifier makers: digit matrices in, strings out.

Check digits are computed with NumPy arithmetic over (rows x digits) matrices, so a million
resident IDs or card numbers cost a few array operations. Each maker takes a Boolean ``valid``
array: rows where it is False get a deliberately wrong check digit (planted defects).
"""

from __future__ import annotations

import base58
import numpy as np
import polars as pl

_CN_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_CN_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def ascii_to_series(codes: np.ndarray) -> pl.Series:
    """(n, k) uint8 matrix of ASCII codes -> pl.String Series of n strings of length k."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    k = codes.shape[1]
    return pl.Series(codes.view(f"S{k}").ravel()).cast(pl.String)


def digits_to_series(digits: np.ndarray) -> pl.Series:
    """(n, k) matrix of digits 0-9 -> strings."""
    return ascii_to_series(digits.astype(np.uint8) + 48)


def random_digits(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.integers(0, 10, size=(n, k), dtype=np.uint8)


def date_digits(dates: np.ndarray) -> np.ndarray:
    """datetime64[D] array -> (n, 8) digits YYYYMMDD."""
    y = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    m = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    d = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    num = y * 10000 + m * 100 + d
    return (num[:, None] // (10 ** np.arange(7, -1, -1))) % 10


def cn_resident_ids(
    rng: np.random.Generator,
    region_digits: np.ndarray,
    birth: np.ndarray,
    male: np.ndarray,
    valid: np.ndarray,
) -> pl.Series:
    """18-character CN resident IDs (GB 11643-1999) with MOD 11-2 check characters.

    Args:
        rng: random generator.
        region_digits: (n, 6) digits of the region code.
        birth: datetime64[D] birth dates.
        male: Boolean; the 17th digit is odd for men and even for women.
        valid: Boolean; False rows get a wrong check character.
    """
    n = len(birth)
    seq = random_digits(rng, n, 3)
    # sex digit: odd for men, even for women, chosen uniformly among the five
    seq[:, 2] = rng.integers(0, 5, size=n) * 2 + male.astype(np.uint8)
    body = np.hstack([region_digits, date_digits(birth), seq]).astype(np.int64)
    r = (body * _CN_WEIGHTS).sum(axis=1) % 11
    r = np.where(valid, r, (r + rng.integers(1, 11, size=n)) % 11)
    codes = np.hstack([body.astype(np.uint8) + 48, _CN_CHECK[r][:, None]])
    return ascii_to_series(codes)


def luhn_numbers(
    prefix_digits: np.ndarray, body_len: int, rng: np.random.Generator, valid: np.ndarray
) -> pl.Series:
    """Card numbers: prefix + random digits + Luhn check digit (wrong where not ``valid``).

    This computes the digit that makes the Luhn check pass, over a (rows x digits) matrix; the
    check itself is written once, in transforms.identifiers.luhn_valid_expr, and the generator's
    tests hold these numbers to it.

    Args:
        prefix_digits: (n, p) digits of the issuer prefix (BIN).
        body_len: total length without the check digit.
        rng: random generator.
        valid: Boolean per row.
    """
    n = prefix_digits.shape[0]
    body = np.hstack([prefix_digits, random_digits(rng, n, body_len - prefix_digits.shape[1])])
    body = body.astype(np.int64)
    # Digits at odd distance from the check digit (rightmost payload digit first) are doubled.
    doubled = ((body_len - np.arange(body_len)) % 2) == 1
    d = np.where(doubled, body * 2, body)
    d = np.where(d > 9, d - 9, d)
    check = (10 - d.sum(axis=1) % 10) % 10
    check = np.where(valid, check, (check + rng.integers(1, 10, size=n)) % 10)
    return digits_to_series(np.hstack([body, check[:, None]]))


def trc20_wallets(rng: np.random.Generator, n: int, valid: np.ndarray) -> list[str]:
    """TRC20 (Tron) addresses: base58check of 0x41 + 20 bytes; invalid ones get one char changed.

    A Python call per wallet is unavoidable (SHA-256 checksum) but wallets are few (one per
    a fraction of suspects).
    """
    raw = rng.integers(0, 256, size=(n, 20), dtype=np.uint8)
    subst = rng.integers(1, len(_BASE58), size=n)
    pos = rng.integers(5, 33, size=n)
    out = []
    for i in range(n):
        addr = base58.b58encode_check(b"\x41" + raw[i].tobytes()).decode("ascii")
        if not valid[i]:
            # change one character: the base58check checksum then fails
            c = _BASE58[(_BASE58.index(addr[pos[i]]) + subst[i]) % len(_BASE58)]
            addr = addr[: pos[i]] + c + addr[pos[i] + 1 :]
        out.append(addr)
    return out


def letters(rng: np.random.Generator, n: int, k: int, alphabet: str) -> np.ndarray:
    """(n, k) ASCII codes drawn from ``alphabet``."""
    codes = np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8)
    return codes[rng.integers(0, len(codes), size=(n, k))]
