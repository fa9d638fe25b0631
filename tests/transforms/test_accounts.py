"""Account normalisation: bank accounts, cards, TRC20 wallets."""

from __future__ import annotations

import doctest

import polars as pl
import pytest

import transforms.accounts
from transforms.accounts import OUTPUT_SCHEMA, normalise_accounts

WALLET = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def test_bank_accounts_are_digits_only_with_no_check():
    out = normalise_accounts(
        pl.Series(["6222-0210-0112 3456", "0123.456.789", "GB29NWBK60161331926819", "12", None]),
        "bank_account",
        "中国工商银行",
    )
    assert out.schema == pl.Schema(OUTPUT_SCHEMA)
    assert out.rows() == [
        ("6222-0210-0112 3456", "6222021001123456", "bank_account", "中国工商银行", None, None),
        ("0123.456.789", "0123456789", "bank_account", "中国工商银行", None, None),
        ("GB29NWBK60161331926819", None, "bank_account", "中国工商银行", None,
         "not a bank account number: 'GB29NWBK60161331926819' is not 6-34 digits"),
        ("12", None, "bank_account", "中国工商银行", None,
         "not a bank account number: '12' is not 6-34 digits"),
        (None, None, "bank_account", "中国工商银行", None, None),
    ]  # fmt: skip


def test_cards_and_wallets_with_institution_per_row():
    cards = normalise_accounts(
        pl.Series(["6222 0000 0000 0000 1", "4111 1111 1111 1112"]),
        "bank_card",
        pl.Series([" 中国银行 ", None]),
    )
    assert cards.select("value_normalised", "institution", "check_valid", "reason").rows() == [
        ("62220000000000001", "中国银行", None, "UnionPay card: Luhn not applicable"),
        ("4111111111111112", None, False, "Luhn check digit is wrong"),
    ]
    wallets = normalise_accounts(pl.Series([WALLET, WALLET[:-1] + "u"]), "crypto_wallet")
    assert wallets.select("kind", "institution", "check_valid", "reason").rows() == [
        ("crypto_wallet", "TRC20", True, None),
        ("crypto_wallet", "TRC20", False, "base58check checksum is wrong"),
    ]


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown account kind 'iban'"):
        normalise_accounts(pl.Series(["1"]), "iban")


def test_docstring_examples():
    assert doctest.testmod(transforms.accounts).failed == 0
