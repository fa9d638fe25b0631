"""Entity-resolution settings, declared as data.

Everything a reviewer may want to diff lives here: which identifier kinds are identity-grade,
which are unique per person (a second value means a different person), the columns Splink
compares and the SQL of each comparison level with its prior m/u probabilities, the blocking
rules, the training plan and every threshold of the clustering and the review queue.
``ResolveSettings.splink_settings(columns)`` compiles the declaration into the settings
dictionary Splink 5 reads; nothing else in transforms/ writes Splink settings by hand.

The comparison levels are plain SQL over ``<column>_l`` / ``<column>_r`` so that they are read,
reviewed and rendered by Splink for any backend. Prior m/u probabilities are used as they are when
the data are too small to train on (``min_records_to_train``); otherwise Splink re-estimates u
by random sampling with a fixed seed and m by expectation maximisation on the data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Identity-grade kinds: a valid check digit makes two records the same person, deterministically.
# A passport number is identity-grade only together with its issuing country.
IDENTITY_KINDS: tuple[str, ...] = ("cn_resident_id", "th_national_id", "mm_nrc", "passport")

# Kinds a person holds at most one valid value of (per issuing country). Two different valid
# values in one cluster mean two people: never merged silently. Passports are excluded on
# purpose: a renewed passport has a new number, and people hold passports of two countries.
UNIQUE_PER_PERSON_KINDS: tuple[str, ...] = ("cn_resident_id", "th_national_id", "mm_nrc")

# Identifier columns handed to Splink (valid or not: a typo that breaks the check digit is still
# strong probabilistic evidence). Column name -> identifier kinds that fill it.
SPLINK_ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "national_id": ("cn_resident_id", "th_national_id", "mm_nrc"),
    "passport_no": ("passport",),
    "other_id": ("febrl_ssid",),
}

# How two records were linked, strongest first: clustering joins edges in this order, and a
# pair linked several ways is explained by the first (cluster.RULE_ORDER, resolve._explain).
LINK_RULES: tuple[str, ...] = ("steward", "identifier", "probabilistic")

# An association value shared by more entities than this is a hub: the one threshold of the
# resolver's entity links and of every mart's entity_link.is_hub (fusionlake.pipeline.marts
# reads it from ResolveSettings, which looks it up here when settings are made).
HUB_MIN_ENTITIES = 10

# Association-grade values: never merge people, become entity-to-entity edges.
# via -> (staged table, value column, filter on kind or None)
ASSOCIATIONS: dict[str, tuple[str, str, str | None]] = {
    "phone": ("phone", "e164", None),
    "account": ("account", "value_normalised", "bank_account|bank_card"),
    "wallet": ("account", "value_normalised", "crypto_wallet"),
    "compound": ("event", "compound", None),
    "case": ("event", "case_ref", None),
}


def _level(
    sql: str, label: str, m: float, u: float, *, tf: str | None = None, null: bool = False
) -> dict[str, Any]:
    level: dict[str, Any] = {"sql_condition": sql, "label_for_charts": label}
    if null:
        level["is_null_level"] = True
        return level
    level.update(m_probability=m, u_probability=u)
    if tf:
        level.update(tf_adjustment_column=tf, tf_adjustment_weight=1.0)
    return level


def _null(*cols: str) -> dict[str, Any]:
    sql = " OR ".join(f'"{c}_l" IS NULL OR "{c}_r" IS NULL' for c in cols)
    return _level(sql, "null", 0, 0, null=True)


def _eq(col: str) -> str:
    return f'"{col}_l" = "{col}_r"'


def _jw(col: str) -> str:
    return f'jaro_winkler_similarity("{col}_l", "{col}_r")'


def _within_edits(left: str, right: str, k: int) -> str:
    """``damerau_levenshtein(left, right) <= k``, behind cheap tests that every such pair passes.

    DuckDB's Damerau-Levenshtein costs about 3 microseconds per pair of 18-character ids, and a
    comparison's edit levels run on every blocked pair whose values differ: 1.8M national ids and
    5.7M passport numbers among the 11.6M pairs of a million generated people, twice each (<= 1,
    then <= 2). The guards only skip pairs that cannot be within ``k`` edits, so the levels are
    exactly as before: lengths at most ``k`` apart; for one edit between non-empty ASCII strings
    of equal length, at most two differing positions (a substitution or a transposition); for
    more edits, one of ``2k + 1`` pieces of ``left`` found unchanged in ``right`` (k edits, a
    transposition across a piece boundary included, damage at most 2k pieces).

    The guards halve the cost of the edit-distance levels at scale (figures: bench/RESULTS.md),
    with the same comparison levels for every pair (tests/transforms/test_resolution_settings.py).
    """
    lengths = f"abs(length({left}) - length({right})) <= {k}"
    if k == 1:
        ascii_equal = (f"strlen({left}) = length({left}) AND strlen({right}) = length({right}) "
                       f"AND strlen({left}) = strlen({right}) AND strlen({left}) > 0")
        guard = f"CASE WHEN {ascii_equal} THEN hamming({left}, {right}) <= 2 ELSE {lengths} END"
    else:
        n = 2 * k + 1
        cut = [f"({i} * length({left})) // {n}" for i in range(n + 1)]
        pieces = " OR ".join(
            f"contains({right}, substr({left}, 1 + {cut[i]}, {cut[i + 1]} - {cut[i]}))"
            for i in range(n)
        )
        guard = f"{lengths} AND ({pieces})"
    return f"({guard}) AND damerau_levenshtein({left}, {right}) <= {k}"


def _else(m: float, u: float) -> dict[str, Any]:
    return _level("ELSE", "all other", m, u)


# The comparisons, in the order they appear in explanations. ``requires`` lists the columns a
# comparison needs; a comparison whose columns are absent from the records is left out (FEBRL
# has postcodes, the agency feeds do not).
COMPARISONS: list[dict[str, Any]] = [
    {
        "requires": ["name_key_sorted", "name_key_phonetic"],
        "comparison": {
            "output_column_name": "name",
            "comparison_description": (
                "one comparison for the whole name, so that agreeing parts are not counted "
                "twice: parts exact, tokens in another order, one part exact and the other "
                "close, phonetic key, Jaro-Winkler of the sorted tokens"
            ),
            "comparison_levels": [
                _null("name_key_sorted"),
                _level(
                    f"{_eq('family_name')} AND {_eq('given_name')}",
                    "exact",
                    0.6,
                    0.0004,
                    tf="name_key_sorted",
                ),
                _level(
                    _eq("name_key_sorted"),
                    "same tokens, other order",
                    0.05,
                    0.0001,
                    tf="name_key_sorted",
                ),
                _level(
                    f"({_eq('family_name')} AND {_jw('given_name')} >= 0.88) OR "
                    f"({_eq('given_name')} AND {_jw('family_name')} >= 0.88)",
                    "one part exact, other close",
                    0.12,
                    0.0003,
                ),
                # Records with several names (native and Latin, aliases: person_name) agree
                # when any name of one has the tokens of any name of the other.
                {**_level('list_has_any("name_keys_l", "name_keys_r")',
                          "another of their names, same tokens", 0.05, 0.0002),
                 "requires": ["name_keys"]},
                _level(_eq("name_key_phonetic"), "phonetic key equal", 0.05, 0.0005),
                _level(f"{_jw('name_key_sorted')} >= 0.92", "jw>=0.92", 0.05, 0.001),
                {**_level(
                    'jaro_winkler_similarity("name_key_alt_l", "name_key_sorted_r") >= 0.92 OR '
                    'jaro_winkler_similarity("name_key_sorted_l", "name_key_alt_r") >= 0.92 OR '
                    'jaro_winkler_similarity("name_key_alt_l", "name_key_alt_r") >= 0.92',
                    "another of their names close (jw>=0.92)", 0.03, 0.001),
                 "requires": ["name_key_alt"]},
                _level(
                    f"{_eq('family_name')} OR {_eq('given_name')}", "one part exact", 0.05, 0.01
                ),
                _level(f"{_jw('name_key_sorted')} >= 0.8", "jw>=0.8", 0.04, 0.05),
                _else(0.04, 0.9377),
            ],
        },
    },
    {
        "requires": ["birth_date", "birth_date_precision"],
        "comparison": {
            "output_column_name": "birth_date",
            "comparison_description": "birth date, honouring its precision",
            "comparison_levels": [
                _null("birth_date"),
                _level(
                    '"birth_date_l" = "birth_date_r" AND "birth_date_precision_l" = \'day\' '
                    "AND \"birth_date_precision_r\" = 'day'",
                    "exact day",
                    0.85,
                    0.0002,
                ),
                _level(
                    "(\"birth_date_precision_l\" <> 'day' OR "
                    "\"birth_date_precision_r\" <> 'day') "
                    'AND year("birth_date_l") = year("birth_date_r")',
                    "same year (imprecise)",
                    0.05,
                    0.02,
                ),
                _level(
                    _within_edits(
                        "strftime(\"birth_date_l\", '%Y%m%d')",
                        "strftime(\"birth_date_r\", '%Y%m%d')",
                        1,
                    ),
                    "one digit off",
                    0.05,
                    0.002,
                ),
                _level(
                    'abs(date_diff(\'day\', "birth_date_l", "birth_date_r")) <= 366',
                    "within a year",
                    0.03,
                    0.03,
                ),
                _else(0.02, 0.9478),
            ],
        },
    },
    {
        "requires": ["sex"],
        "comparison": {
            "output_column_name": "sex",
            "comparison_description": "sex",
            "comparison_levels": [
                _null("sex"),
                _level('"sex_l" = "sex_r"', "exact", 0.97, 0.5),
                _else(0.03, 0.5),
            ],
        },
    },
    {
        "requires": ["nationality"],
        "comparison": {
            "output_column_name": "nationality",
            "comparison_description": "nationality (ISO alpha-2)",
            "comparison_levels": [
                _null("nationality"),
                _level('"nationality_l" = "nationality_r"', "exact", 0.95, 0.3),
                _else(0.05, 0.7),
            ],
        },
    },
]
for _col, _m_exact in (("national_id", 0.9), ("passport_no", 0.8), ("other_id", 0.8)):
    COMPARISONS.append(
        {
            "requires": [_col],
            "comparison": {
                "output_column_name": _col,
                "comparison_description": f"{_col}: exact, one or two edits (typos)",
                "comparison_levels": [
                    _null(_col),
                    _level(f'"{_col}_l" = "{_col}_r"', "exact", _m_exact, 1e-6),
                    _level(
                        _within_edits(f'"{_col}_l"', f'"{_col}_r"', 1),
                        "1 edit",
                        (1 - _m_exact) * 0.6,
                        1e-5,
                    ),
                    _level(
                        _within_edits(f'"{_col}_l"', f'"{_col}_r"', 2),
                        "2 edits",
                        (1 - _m_exact) * 0.2,
                        1e-4,
                    ),
                    _else((1 - _m_exact) * 0.2, 1 - 1.11e-4),
                ],
            },
        }
    )
for _col in ("postcode", "street_number"):
    COMPARISONS.append(
        {
            "requires": [_col],
            "comparison": {
                "output_column_name": _col,
                "comparison_description": f"{_col} (address, where a feed has it)",
                "comparison_levels": [
                    _null(_col),
                    _level(f'"{_col}_l" = "{_col}_r"', "exact", 0.8, 0.01, tf=_col),
                    _level(
                        _within_edits(f'"{_col}_l"', f'"{_col}_r"', 1), "1 edit", 0.1, 0.05
                    ),
                    _else(0.1, 0.94),
                ],
            },
        }
    )

# Blocking rules: pairs are scored only where one of these holds. They are on the cross-script
# keys (sorted and phonetic name keys survive order swaps and spelling), birth date, identifiers.
#
# Two costs shape them at scale (figures: bench/RESULTS.md):
#
# * A rule whose blocks grow with the population (a common Chinese name, a birth date shared by
#   dozens of people) makes pairs that grow with its square; at a million people the plain rules
#   would score ~360M pairs. Each such rule is narrowed to values both sides must share.
# * Splink runs every rule as a join whose ON clause is the rule, excluding the pairs of the
#   rules before it. DuckDB hashes on the rule's equalities and evaluates everything else on
#   every candidate pair of the join: "same name and birth years at most 2 apart" joins on the
#   name alone and filters hundreds of millions of candidates. So a window is written as
#   equalities (``l.birth_year + 1 = r.birth_year``), a missing value as a condition on one side
#   (``l.birth_year IS NULL``: DuckDB filters that side before the join), and the one costly
#   comparison (Jaro-Winkler) comes first (its 9M candidates then exclude nothing; the later
#   rules' fewer candidates exclude its pairs instead) and inside the narrowest join: a third of
#   the blocking time and a fifth of the scored pairs, with the same F1.
#
# ``narrow`` lists conditions ANDed to a rule when their columns exist (FEBRL has neither sex
# nor nationality); ``unless`` names columns whose presence makes a rule redundant.
_SAME_SEX = {"requires": ["sex"], "sql": "(l.sex IS NULL OR r.sex IS NULL OR l.sex = r.sex)"}
_SAME_NATIONALITY = {
    "requires": ["nationality"],
    "sql": "(l.nationality IS NULL OR r.nationality IS NULL OR l.nationality = r.nationality)",
}
# The same, as join keys: for rules whose candidates are too many to filter one by one; the
# rules after them cover the records that lack the value.
_SEX_KEY = {"requires": ["sex"], "sql": "l.sex = r.sex"}
_NATIONALITY_KEY = {"requires": ["nationality"], "sql": "l.nationality = r.nationality"}
_NAME_CLOSE = "jaro_winkler_similarity(l.name_key_sorted, r.name_key_sorted) >= 0.8"
_PEOPLE = [_SAME_SEX, _SAME_NATIONALITY]
_NAME_YEAR = ["name_key_sorted", "birth_year"]
_SPLIT = ["given_name", "family_name", "birth_year"]
_DOB_NAME = ["birth_date", "name_key_sorted"]
BLOCKING_RULES: list[dict[str, Any]] = [
    # The same birth date and a close name where no part is equal (a name kept whole in one
    # feed and split in another, typos in both parts): Jaro-Winkler on every candidate, so first,
    # and joined on sex and nationality too; the records lacking either come in the next rules.
    {
        "requires": _DOB_NAME,
        "sql": f"l.birth_date = r.birth_date AND {_NAME_CLOSE}",
        "narrow": [_SEX_KEY, _NATIONALITY_KEY],
    },
    *[
        {
            "requires": [*_DOB_NAME, key],
            "sql": f"l.birth_date = r.birth_date AND {side}.{key} IS NULL AND {_NAME_CLOSE}",
            "narrow": [other],
        }
        for key, other in (("sex", _SAME_NATIONALITY), ("nationality", _SAME_SEX))
        for side in ("l", "r")
    ],
    # The same name, born in the same or an adjacent year (or the year unknown on one side).
    {
        "requires": _NAME_YEAR,
        "sql": "l.name_key_sorted = r.name_key_sorted AND l.birth_year = r.birth_year",
        "narrow": _PEOPLE,
    },
    {
        "requires": _NAME_YEAR,
        "sql": "l.name_key_sorted = r.name_key_sorted AND l.birth_year + 1 = r.birth_year",
        "narrow": _PEOPLE,
    },
    {
        "requires": _NAME_YEAR,
        "sql": "l.name_key_sorted = r.name_key_sorted AND l.birth_year = r.birth_year + 1",
        "narrow": _PEOPLE,
    },
    *[
        {"requires": _NAME_YEAR, "sql": f"l.name_key_sorted = r.name_key_sorted AND {side}"}
        for side in ("l.birth_year IS NULL", "r.birth_year IS NULL")
    ],
    # Another of their names (a Latin column beside a native one, an alias: person_name) equal
    # to the other record's name or other name, born in the same year. name_key_alt is null for
    # records with one name, so these join only the few that have two.
    *[
        {"requires": ["name_key_alt", "birth_year"],
         "sql": f"{left} = {right} AND l.birth_year = r.birth_year", "narrow": _PEOPLE}
        for left, right in (("l.name_key_alt", "r.name_key_sorted"),
                            ("l.name_key_sorted", "r.name_key_alt"),
                            ("l.name_key_alt", "r.name_key_alt"))
    ],
    {
        "requires": ["name_key_sorted"],
        "unless": ["birth_year"],
        "sql": "l.name_key_sorted = r.name_key_sorted",
    },
    {
        "requires": ["name_key_phonetic", "birth_year"],
        "sql": "l.name_key_phonetic = r.name_key_phonetic AND l.birth_year = r.birth_year",
        "narrow": _PEOPLE,
    },
    # Given and family name swapped between the fields.
    {
        "requires": _SPLIT,
        "sql": "l.given_name = r.family_name AND l.family_name = r.given_name "
        "AND l.birth_year = r.birth_year",
    },
    # Given name exact and family name starting alike: a typo in the family name. (The mirror
    # rule, family exact and given starting alike, blocked 5 times more pairs on generated data,
    # where many people share a family name, and found no extra match on FEBRL4.)
    *[
        {
            "requires": _SPLIT,
            "sql": "l.given_name = r.given_name AND substr(l.family_name, 1, 3) = "
            f"substr(r.family_name, 1, 3) AND {year}",
        }
        for year in ("l.birth_year = r.birth_year", "l.birth_year IS NULL", "r.birth_year IS NULL")
    ],
    # The same birth date and one name part: a transliteration that changed the other part.
    {
        "requires": ["birth_date", "family_name"],
        "sql": "l.birth_date = r.birth_date AND l.family_name = r.family_name",
        "narrow": _PEOPLE,
    },
    {
        "requires": ["birth_date", "given_name"],
        "sql": "l.birth_date = r.birth_date AND l.given_name = r.given_name",
        "narrow": _PEOPLE,
    },
    # ... or in the other field (a feed that has only one name field fills given_name).
    *[
        {
            "requires": ["birth_date", "given_name", "family_name"],
            "sql": f"l.birth_date = r.birth_date AND {cross}",
            "narrow": _PEOPLE,
        }
        for cross in ("l.family_name = r.given_name", "l.given_name = r.family_name")
    ],
    {"requires": ["national_id"], "sql": "l.national_id = r.national_id"},
    {"requires": ["passport_no"], "sql": "l.passport_no = r.passport_no"},
    {"requires": ["other_id"], "sql": "l.other_id = r.other_id"},
    {"requires": ["postcode"], "sql": "l.postcode = r.postcode"},
]


def blocking_sql(rule: dict[str, Any], columns: set[str]) -> str:
    """The SQL of a blocking rule with the ``narrow`` conditions its columns allow."""
    parts = [rule["sql"]] + [
        n["sql"] for n in rule.get("narrow", ()) if set(n["requires"]) <= columns
    ]
    return " AND ".join(parts)


# Deterministic rules used to estimate the prior match probability, and their assumed recall.
PRIOR_RULES: list[dict[str, Any]] = [
    {"requires": ["national_id"], "sql": "l.national_id = r.national_id"},
    {"requires": ["passport_no"], "sql": "l.passport_no = r.passport_no"},
    {"requires": ["other_id"], "sql": "l.other_id = r.other_id"},
    {
        "requires": ["name_key_sorted", "birth_date"],
        "sql": "l.name_key_sorted = r.name_key_sorted AND l.birth_date = r.birth_date",
    },
]

# EM training blocks: each leaves the comparisons it blocks on to the other blocks.
EM_RULES: list[dict[str, Any]] = [
    {"requires": ["birth_date"], "sql": "l.birth_date = r.birth_date"},
    {"requires": ["name_key_phonetic"], "sql": "l.name_key_phonetic = r.name_key_phonetic"},
]


@dataclass(frozen=True)
class ResolveSettings:
    """Thresholds and training plan of one resolution run; the defaults are the reviewed ones.

    Attributes:
        link_threshold: a probabilistic pair at or above this may join two records. 0.5 is
            the point where a match is more likely than not; it is safe as a default because
            weak links must also pass the guards below (on FEBRL4 it gives precision 1.0 and
            recall 0.9988, where 0.9 loses 14 more true pairs and gains no precision).
        strong_threshold: at or above this a pair joins without the chaining guards (ties,
            pairs scored as different across the two clusters); below it they apply.
        join_clusters_threshold: the probability needed to join two clusters that both already
            hold several records (one bad link must not merge two established people).
        review_low: probabilistic pairs from here up to ``link_threshold`` go to review; a pair
            below it is evidence that its two records are different people.
        predict_threshold: scored pairs below this are kept only as evidence against (ids only).
        identifier_max_group: a valid identity number held by more records than this is treated
            as a data error (a placeholder or test number) and sent to review instead of linking.
        block_max_pairs: a blocking rule's block (the records whose keys agree) of more
            candidate pairs than this is not compared pair by pair: an agency sending one
            template row thousands of times would otherwise make millions of pairs, all
            matches, and exhaust memory. Its records are compared under the other rules and
            the block goes to review (transforms/resolution/blocks.py). At a million generated
            people the largest block has 304,704 candidate pairs; beyond a few million people
            raise this with the data.
        identical_pairs_per_record: records identical in every compared column (copies) may
            make this many pairs per record in all (``identical_budget``; at least
            ``block_max_pairs``): many template rows, each copied fewer times than makes a
            block too large, add up too. Beyond it the blocks of the largest groups of copies
            are left out like an oversize block (blocks.copied_blocks). A million generated
            people make 0.12 per record (197,228 pairs, groups of at most 4).
        hub_min_entities: an association value shared by more entities than this is a hub
            (default HUB_MIN_ENTITIES; the marts flag hubs with the same number).
        hub_max_clique: a value shared by more entities than this is linked as a star to its
            smallest entity id instead of every pair (a compound of 5,000 people would
            otherwise produce 12.5 million links). By default every hub is a star: with cliques
            up to 50 entities, hubs made 5.6M of the 6.9M entity links of a million generated
            people, each re-derived by every mart, while saying no more than the star does.
        min_records_to_train: below this, the declared prior m/u probabilities are used as they
            are (EM on a handful of records estimates nothing).
        prior_match_probability: used when the data are too small to estimate it.
        prior_recall: assumed recall of PRIOR_RULES when estimating the prior from data.
        u_max_pairs: pairs sampled to estimate u probabilities.
        em_max_pairs: cap on blocked pairs per EM session.
        duckdb_memory_fraction: share of the machine's memory Splink's DuckDB may hold before
            it spills to disk (the rest is for the Polars frames of the same process): more
            raises the scoring peak, less slows prediction.
        seed: the random seed of u sampling: the same data give the same model.
        backend: the engine Splink trains and scores on in a full resolution: ``duckdb`` (in
            this process) or ``spark`` (the active Spark session, or a local one; the
            ``spark`` extra). The SQL above is rendered for it (dialect.py); clustering, ids
            and incremental scoring stay where they are. Two engines give the same entities
            up to the last bits of floating-point sums (tests/test_spark.py), so the backend is
            not part of the fingerprint: a full run on Spark is continued incrementally.
        spark_memory_fraction: share of the machine's memory a Spark session started by the
            resolver may hold (local mode: driver and executors in one JVM); a session the
            deployment started keeps its own.
    """

    link_threshold: float = 0.5
    strong_threshold: float = 0.99
    join_clusters_threshold: float = 0.99
    review_low: float = 0.2
    predict_threshold: float = 0.05
    identifier_max_group: int = 50
    block_max_pairs: int = 1_000_000
    identical_pairs_per_record: float = 1.0
    hub_min_entities: int = field(default_factory=lambda: HUB_MIN_ENTITIES)
    hub_max_clique: int = 10
    min_records_to_train: int = 1000
    prior_match_probability: float = 1e-4
    prior_recall: float = 0.8
    u_max_pairs: float = 2e6
    duckdb_memory_fraction: float = 0.15
    spark_memory_fraction: float = 0.4
    em_max_pairs: float | None = 1e6
    seed: int = 42
    backend: str = "duckdb"
    identity_kinds: tuple[str, ...] = IDENTITY_KINDS
    unique_per_person_kinds: tuple[str, ...] = UNIQUE_PER_PERSON_KINDS
    splink_id_columns: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(SPLINK_ID_COLUMNS)
    )
    associations: dict[str, tuple[str, str, str | None]] = field(
        default_factory=lambda: dict(ASSOCIATIONS)
    )
    comparisons: list[dict[str, Any]] = field(default_factory=lambda: list(COMPARISONS))
    blocking_rules: list[dict[str, Any]] = field(default_factory=lambda: list(BLOCKING_RULES))
    prior_rules: list[dict[str, Any]] = field(default_factory=lambda: list(PRIOR_RULES))
    em_rules: list[dict[str, Any]] = field(default_factory=lambda: list(EM_RULES))
    # A Splink model (JSON) trained by an earlier run: used when training fails on this run's
    # data (transforms/resolution/splink.py; the pipeline keeps the last good one in the lake).
    fallback_model: str | None = None

    def with_(self, **changes: Any) -> ResolveSettings:
        """A copy with some fields changed (settings are immutable)."""
        return replace(self, **changes)

    def identical_budget(self, records: int) -> int:
        """The most pairs copies among ``records`` records may make (identical_pairs_per_record)."""
        return max(self.block_max_pairs, int(self.identical_pairs_per_record * records))

    def fingerprint(self) -> str:
        """A short hash of every setting a resolution's result depends on.

        An incremental resolution continues the state a full one kept only under the same
        fingerprint: with a threshold, comparison or identifier kind changed, the entities it
        leaves alone would still follow the old settings. The fallback model and DuckDB's
        memory share change no result, and the engine (``backend``, with its memory) nothing
        beyond rounding, so they are left out.
        """
        kept = {k: v for k, v in asdict(self).items()
                if k not in ("fallback_model", "duckdb_memory_fraction", "backend",
                             "spark_memory_fraction")}
        text = json.dumps(kept, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def usable(self, rules: list[dict[str, Any]], columns: set[str]) -> list[dict[str, Any]]:
        """The declared entries whose required columns exist and hold data (and whose
        ``unless`` columns do not)."""
        return [
            r
            for r in rules
            if set(r["requires"]) <= columns and not set(r.get("unless", ())) & columns
        ]

    def splink_settings(self, columns: set[str], term_frequencies: bool = True) -> dict[str, Any]:
        """Compile the declaration into a Splink 5 settings dictionary.

        Args:
            columns: the columns of the records handed to Splink that hold at least one value.
            term_frequencies: keep the declared term-frequency adjustments. Off for inputs too
                small to train on: in a handful of records every name looks common.
        """
        comparisons = [
            # a level may need columns of its own (``requires``): left out without them
            {**c["comparison"], "comparison_levels": [
                {k: v for k, v in level.items() if k != "requires"}
                for level in c["comparison"]["comparison_levels"]
                if set(level.get("requires", ())) <= columns
            ]}
            for c in self.usable(self.comparisons, columns)
        ]
        if not term_frequencies:
            comparisons = [
                {
                    **c,
                    "comparison_levels": [
                        {k: v for k, v in level.items() if not k.startswith("tf_adjustment")}
                        for level in c["comparison_levels"]
                    ],
                }
                for c in comparisons
            ]
        return {
            "link_type": "dedupe_only",
            "unique_id_column_name": "record_id",
            "probability_two_random_records_match": self.prior_match_probability,
            "blocking_rules_to_generate_predictions": [
                blocking_sql(r, columns) for r in self.usable(self.blocking_rules, columns)
            ],
            "comparisons": comparisons,
            # The record values of each pair are not carried through prediction: the evidence
            # of a link is built from the records afterwards (resolve._facts); carrying them
            # through every blocked pair costs memory at the scoring peak.
            "retain_matching_columns": False,
            # The per-comparison match weights (mw_*), which explain every link.
            "retain_intermediate_calculation_columns": True,
            "additional_columns_to_retain": [],
        }
