"""Shares of the scenario and rates of the planted defects, as named constants.

Tests read these to check that the generated files plant what they say (a share of invalid
check digits close to the constant, and so on). Change a rate here, not in the code.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- population -------------------------------------------------------------------------------
SUSPECT_SHARE = 0.06  # organisers and recruiters
VICTIM_SHARE = 0.40  # people in China who reported fraud; the rest are compound workers
RARE_CHAR_RATE = 0.03  # CN given names with a character outside GBK (GB18030 only)
PEOPLE_PER_HUB_PHONE = 60  # a compound hub phone is shared by about this many people ...
HUB_PHONE_RATE = 0.30  # ... and this share of compound people use one as their own number

# --- who is seen where ------------------------------------------------------------------------
MM_DETAINED_RATE = 0.77  # ~1,000 detained of ~1,300 foreigners identified (Myanmar, 2025)
TH_CROSSING_RATE = 0.70  # workers handed over to Thailand at Mae Sot
REPATRIATED_RATE = 0.90  # of those detained in Thailand (not Thai, not Myanmar): charter home
CN_SUSPECT_AFTER_RETURN_RATE = 0.80  # Chinese returnees registered as suspects by CN MPS
CN_SUSPECT_LISTED_RATE = 0.85  # Chinese organisers/recruiters listed by CN MPS
CROSSING_GROUP = 50  # people crossing to Mae Sot together
CHARTER_SIZE = 40  # passengers per charter flight
SECOND_REPORT_RATE = 0.03  # victims who report twice (two report numbers, one person)
REPEAT_PERSON_RATE = 0.01  # persons listed twice in one feed under different keys

# --- planted defects ---------------------------------------------------------------------------
INVALID_ID_RATE = 0.02  # CN resident IDs with a wrong check character; NRCs with 5 digits
INVALID_CARD_RATE = 0.05  # bank cards failing Luhn
INVALID_WALLET_RATE = 0.03  # TRC20 wallets failing base58check
DUPLICATE_ROW_RATE = 0.004  # exact copies of a row (same key) in the same drop
BROKEN_ROW_RATE = 0.003  # rows missing the key or the name, or with an impossible date
MISSING_FIELD_RATE = 0.05  # optional fields (phone, passport, ...) left empty
WRONG_BIRTH_DATE_RATE = 0.02  # birth date off by a day, a month or a year
YEAR_ONLY_BIRTH_RATE = 0.10  # mm_police: birth written as a year alone
NAME_VARIANT_RATE = 0.20  # Latin name with a transliteration variant (LV for LYU, HSU for XU)
NAME_TYPO_RATE = 0.05  # Latin name with a dropped, doubled or swapped letter
NAME_SWAP_RATE = 0.05  # Latin name with given and family name swapped
ZAWGYI_RATE = 0.15  # Burmese names encoded in Zawgyi instead of Unicode

# --- shapes of real registers (issue 18) ---------------------------------------------------------
LATIN_NAME_RATE = 0.5  # mm_police: Burmese-named rows that also give the name in Latin (name_en)
CN_LATIN_NAME_RATE = 0.3  # cn_mps/suspects: rows with the passport (Latin) name beside 姓名
NRC_IN_PASSPORT_RATE = 0.5  # th_imm: Myanmar nationals without a passport: their NRC instead
MIXED_SCRIPT_NRC_RATE = 0.10  # mm_police: Latin NRC with the Burmese (နိုင်) marker, or
#                               Burmese digits after a Latin township code
CORRUPT_BIRTH_DATE_RATE = 0.01  # birth dates that are no date at all (00/00/0000, 1985-13-45)
# Malformed JSON lines in mm_police's drop (truncated copies of a row: no person is lost); the
# reader quarantines them with their line numbers and reads the rest.
MALFORMED_LINES = 2


@dataclass(frozen=True)
class Params:
    """The constants above as one value (tests may pass their own)."""

    suspect_share: float = SUSPECT_SHARE
    victim_share: float = VICTIM_SHARE
    rare_char_rate: float = RARE_CHAR_RATE
    people_per_hub_phone: int = PEOPLE_PER_HUB_PHONE
    hub_phone_rate: float = HUB_PHONE_RATE
    mm_detained_rate: float = MM_DETAINED_RATE
    th_crossing_rate: float = TH_CROSSING_RATE
    repatriated_rate: float = REPATRIATED_RATE
    cn_suspect_after_return_rate: float = CN_SUSPECT_AFTER_RETURN_RATE
    cn_suspect_listed_rate: float = CN_SUSPECT_LISTED_RATE
    crossing_group: int = CROSSING_GROUP
    charter_size: int = CHARTER_SIZE
    second_report_rate: float = SECOND_REPORT_RATE
    repeat_person_rate: float = REPEAT_PERSON_RATE
    invalid_id_rate: float = INVALID_ID_RATE
    invalid_card_rate: float = INVALID_CARD_RATE
    invalid_wallet_rate: float = INVALID_WALLET_RATE
    duplicate_row_rate: float = DUPLICATE_ROW_RATE
    broken_row_rate: float = BROKEN_ROW_RATE
    missing_field_rate: float = MISSING_FIELD_RATE
    wrong_birth_date_rate: float = WRONG_BIRTH_DATE_RATE
    year_only_birth_rate: float = YEAR_ONLY_BIRTH_RATE
    name_variant_rate: float = NAME_VARIANT_RATE
    name_typo_rate: float = NAME_TYPO_RATE
    name_swap_rate: float = NAME_SWAP_RATE
    zawgyi_rate: float = ZAWGYI_RATE
    latin_name_rate: float = LATIN_NAME_RATE
    cn_latin_name_rate: float = CN_LATIN_NAME_RATE
    nrc_in_passport_rate: float = NRC_IN_PASSPORT_RATE
    mixed_script_nrc_rate: float = MIXED_SCRIPT_NRC_RATE
    corrupt_birth_date_rate: float = CORRUPT_BIRTH_DATE_RATE
    malformed_lines: int = MALFORMED_LINES
    # Numbered source keys (case, report and row numbers) start after this, and manifest ids
    # end in it: shards of one population generated with their own seeds (bench/bench_scale.py)
    # keep distinct keys, so no shard's rows supersede another's. 0 changes nothing.
    key_offset: int = 0
