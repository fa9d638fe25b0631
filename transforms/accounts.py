"""Financial accounts: bank accounts, payment cards, crypto wallets.

Public surface: :func:`normalise_accounts`. The card and wallet checks are the same rules as the
identifier kinds ``bank_card`` and ``crypto_wallet`` (transforms/identifiers.py), so GX validation
and standardisation agree.
"""

from __future__ import annotations

import polars as pl

from transforms.identifiers import normalise_identifiers

OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "value_original": pl.String(),
    "value_normalised": pl.String(),
    "kind": pl.String(),
    "institution": pl.String(),
    "check_valid": pl.Boolean(),
    "reason": pl.String(),
}

#: Account kinds a feed can name, with the institution used when the feed gives none.
ACCOUNT_KINDS: dict[str, str | None] = {
    "bank_account": None,
    "bank_card": None,
    "crypto_wallet": "TRC20",  # the only chain the feeds carry so far
}


def _bank_account(values: pl.Series) -> pl.DataFrame:
    """Bank account number: digits only (spaces, dashes, dots removed); no check digit to test.

    Account numbers have no common check rule across banks, so check_valid stays null; a value
    with anything but digits and separators is not normalised.
    """
    v = pl.col("v")
    c = v.str.replace_all(r"[\s\-\.]", "")
    c = pl.when(c.str.len_chars() > 0).then(c)
    ok = c.str.contains(r"^\d{6,34}$")
    return pl.DataFrame({"v": values}).select(
        pl.when(ok).then(c).alias("value_normalised"),
        pl.lit(None, pl.Boolean).alias("check_valid"),
        pl.when(c.is_not_null() & ~ok)
        .then(pl.format("not a bank account number: '{}' is not 6-34 digits", v))
        .alias("reason"),
    )


def normalise_accounts(
    values: pl.Series, kind: str, institution: pl.Series | str | None = None
) -> pl.DataFrame:
    """Normalise account numbers of one kind.

    Args:
        values: account numbers as written.
        kind: ``bank_account`` (digits only, no check), ``bank_card`` (Luhn; a UnionPay card
            failing Luhn gets check_valid null, see identifiers.bank_card_result) or
            ``crypto_wallet`` (TRC20: base58check, version byte 0x41).
        institution: bank name per row (Series) or for all rows (str); wallets default to
            "TRC20".

    Returns:
        One row per input: value_original, value_normalised, kind, institution, check_valid,
        reason.

    Examples:
        >>> normalise_accounts(pl.Series(["6222 0210 0112 3456 789"]), "bank_account").row(0)
        ('6222 0210 0112 3456 789', '6222021001123456789', 'bank_account', None, None, None)
    """
    if kind not in ACCOUNT_KINDS:
        raise ValueError(f"unknown account kind {kind!r}; known: {', '.join(ACCOUNT_KINDS)}")
    values = values.cast(pl.String)
    if kind == "bank_account":
        result = _bank_account(values)
    else:
        result = normalise_identifiers(values, kind).select(
            "value_normalised", "check_valid", "reason"
        )
    if isinstance(institution, pl.Series):
        if len(institution) != len(values):
            raise ValueError(f"institution has {len(institution)} values, values has {len(values)}")
        inst = institution.cast(pl.String).str.strip_chars()
        if ACCOUNT_KINDS[kind]:
            inst = inst.fill_null(ACCOUNT_KINDS[kind])
    else:
        inst = pl.Series([institution or ACCOUNT_KINDS[kind]] * len(values), dtype=pl.String)
    return (
        pl.DataFrame({"value_original": values, "kind": [kind] * len(values), "institution": inst})
        .hstack(result)
        .select([pl.col(c).cast(t) for c, t in OUTPUT_SCHEMA.items()])
    )


__all__ = ["ACCOUNT_KINDS", "normalise_accounts"]
