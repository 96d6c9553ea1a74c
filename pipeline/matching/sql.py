"""DuckDB macros the models' SQL conditions may use. Registered on every connection that
compares records, so model.json can name them like built-in functions."""

from __future__ import annotations

from pathlib import Path

import duckdb

TOKEN_MATCH = 0.88
# Two spellings of one name (standardised names a, b with phonetic keys ka, kb): one
# phonetic key, Jaro-Winkler 0.88, one typo, or one name covering the other token by
# token. What the household vetoes of both models accept as the same given name.
ONE_NAME_SPELLINGS = ("ka = kb", "jaro_winkler_similarity(a, b) >= 0.88", "one_edit(a, b)", "tokens_covered(a, b)")

MACROS = {
    # Every token of x has a partner in y with Jaro-Winkler >= TOKEN_MATCH.
    "tokens_within": f"""(x, y) AS list_bool_and(list_transform(string_split(x, ' '),
        lambda t: list_max(list_transform(string_split(y, ' '), lambda u: jaro_winkler_similarity(t, u))) >= {TOKEN_MATCH}))""",
    # The shorter name is covered by the longer one: typos, an added or dropped token, a
    # changed order. A shared common token alone (SITI, a marga) is not enough. Of two
    # names as long, each covers the other: else both tokens of AHMAD AHMADI found a
    # partner in AHMAD YANI, and a twin's row passed as her sibling's.
    "tokens_covered": """(a, b) AS CASE WHEN len(string_split(a, ' ')) < len(string_split(b, ' ')) THEN tokens_within(a, b)
        WHEN len(string_split(a, ' ')) > len(string_split(b, ' ')) THEN tokens_within(b, a)
        WHEN tokens_within(a, b) THEN tokens_within(b, a) WHEN a IS NULL OR b IS NULL THEN NULL ELSE FALSE END""",
    # damerau_levenshtein(a, b) = 1 without computing the distance: one substitution (or
    # two neighbours swapped) between strings of one length, one letter more or less
    # otherwise. The full distance cost half of every comparison of NIK digits and names.
    # (hamming() and levenshtein() refuse empty strings.) A CASE, not OR and AND: those
    # computed the distance for every pair of one length (5.3M pairs of NIKs: 17 s, now 0.5 s).
    "one_edit": """(a, b) AS CASE WHEN a IS NULL OR b IS NULL THEN NULL WHEN a = '' OR b = '' THEN length(a) + length(b) = 1
        WHEN length(a) = length(b) THEN CASE hamming(a, b) WHEN 1 THEN TRUE WHEN 2 THEN damerau_levenshtein(a, b) = 1 ELSE FALSE END
        WHEN abs(length(a) - length(b)) = 1 THEN levenshtein(a, b) = 1 ELSE FALSE END""",
    "one_name_spelled": "(a, b, ka, kb) AS (" + " OR ".join(ONE_NAME_SPELLINGS) + ")",
    # NOT one_name_spelled as a chain of ANDs, which DuckDB stops evaluating for a pair at
    # the first false one (under NOT, every alternative is computed for every pair).
    "names_spelled_apart": "(a, b, ka, kb) AS (" + " AND ".join(f"NOT ({test})" for test in ONE_NAME_SPELLINGS) + ")",
    # One vowel changed for another, nothing else: RINA / RINI, PUTRA / PUTRI, HASAN / HASIN.
    # Parents name twins and siblings so; a second registration misspells a name otherwise
    # (an H, a doubled letter, OE, an added or dropped letter).
    # CASE, not AND: hamming() refuses strings of different lengths, and under AND both
    # regular expressions ran for every pair of one length (5.3M name pairs: 1.5 s, now 0.3 s).
    "one_vowel_apart": """(a, b) AS CASE WHEN length(a) = length(b) AND a <> b
        THEN CASE WHEN hamming(a, b) = 1 THEN regexp_replace(a, '[AEIOU]', '_', 'g') = regexp_replace(b, '[AEIOU]', '_', 'g')
                  ELSE FALSE END
        ELSE FALSE END""",
}


def register_macros(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    for name, body in MACROS.items():
        con.execute(f"CREATE OR REPLACE TEMP MACRO {name}{body}")
    return con


def sql_path(path: Path | str) -> str:
    """A path as an SQL string literal (COPY and views take no parameters)."""
    return "'" + str(path).replace("'", "''") + "'"
