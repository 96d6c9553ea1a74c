"""Standardise Indonesian names and records so that spelling variants compare equal.

Order matters and is part of the method:
1. upper case; academic degrees and honorifics removed (H., Hj., Drs., S.Pd., Alm. ...);
2. punctuation to spaces; bin/binti split off as a patronym (evidence, not noise);
3. old spelling (EYD 1972) mapped to the new: OE->U, DJ->J, TJ->C, NJ->NY, SJ->SY, CH->KH;
4. common abbreviations expanded (Moch./M. -> MUHAMMAD, St. -> SITI, Abd. -> ABDUL ...);
5. a phonetic key per token, built on the normalised spelling (see `phonetic_key`).
All of it is polars expressions: no Python loop over records.
"""

from __future__ import annotations

import polars as pl

# Degrees follow the name, usually after a comma ("AMINAH, S.PD.I"); without a comma
# they are recognised by the dotted form ("AMINAH S.PD").
DEGREE_AFTER_COMMA = r",.*$"
DEGREE_DOTTED = r"\s(S|M|D|A)\.\s?(PD|E|H|AG|KOM|SOS|T|KES|KEP|IP|HUT|PT|SI|AK|FARM|KED|PSI|HI|MD|N|STAT|KEB)\b\.?[A-Z.]*"
HONORIFICS = [
    "H", "HJ", "HAJI", "HAJJAH", "HJH", "KH", "KYAI", "DRS", "DRA", "IR", "DR", "PROF", "R", "RA", "RADEN",
    "BAPAK", "BPK", "BP", "IBU", "IB", "SDR", "SDRI", "NY", "NYONYA", "TN", "ALM", "ALMH", "ALMARHUM",
    "ALMARHUMAH", "AMD", "SE", "SH", "SPD", "SAG", "SKOM", "SSOS", "MM", "MPD", "SKM", "AMKEB",
]
# ST is both Sarjana Teknik and the abbreviation of SITI; as a leading token it is SITI.
LEADING_ABBREVIATIONS = {"ST": "SITI", "M": "MUHAMMAD", "MOH": "MUHAMMAD", "MUH": "MUHAMMAD"}
TOKEN_SPELLINGS = {
    "MUHAMAD": "MUHAMMAD", "MOHAMMAD": "MUHAMMAD", "MOHAMAD": "MUHAMMAD", "MOCHAMMAD": "MUHAMMAD",
    "MOCHAMAD": "MUHAMMAD", "MOKHAMMAD": "MUHAMMAD", "MOKHAMAD": "MUHAMMAD", "MUHAMMED": "MUHAMMAD",
    "MOHAMED": "MUHAMMAD", "MOCH": "MUHAMMAD", "MOKH": "MUHAMMAD", "MUCH": "MUHAMMAD", "MUKH": "MUHAMMAD",
    "MHD": "MUHAMMAD", "MUHD": "MUHAMMAD", "MOHD": "MUHAMMAD", "MUHAMAT": "MUHAMMAD", "MUHAMMAT": "MUHAMMAD",
    "NUUR": "NUR", "NURUL": "NURUL", "ABD": "ABDUL", "ABDUL": "ABDUL", "ABDOL": "ABDUL",
    "AKHMAD": "AHMAD", "ACHMAD": "AHMAD", "AHMED": "AHMAD", "AMAD": "AHMAD",
    "SITTI": "SITI", "SITIH": "SITI",
}
PATRONYM_MARKERS = ("BIN", "BINTI", "BT", "BN")
OLD_SPELLING = (("OE", "U"), ("DJ", "J"), ("TJ", "C"), ("NJ", "NY"), ("SJ", "SY"), ("CH", "KH"))


def _drop_tokens(text: pl.Expr, tokens: list[str]) -> pl.Expr:
    pattern = r"\b(" + "|".join(tokens) + r")\b"
    return text.str.replace_all(pattern, " ")


def clean_name(name: pl.Expr) -> pl.Expr:
    """Upper case, degrees and honorifics removed, punctuation to single spaces."""
    text = name.str.to_uppercase().str.replace(DEGREE_AFTER_COMMA, "").str.replace_all(DEGREE_DOTTED, " ")
    text = text.str.replace_all(r"[^A-Z\s]", " ")
    text = _drop_tokens(text, HONORIFICS)
    return text.str.replace_all(r"\s+", " ").str.strip_chars()


def modern_spelling(text: pl.Expr) -> pl.Expr:
    for old, new in OLD_SPELLING:
        text = text.str.replace_all(old, new, literal=True)
    return text


def phonetic_key(token: pl.Expr) -> pl.Expr:
    """A key for one Indonesian name token, applied after `modern_spelling`.

    Indonesian spelling variation is mostly in vowels (Suparmi/Soeparmi/Suparmie), in an
    H after a consonant or at the end (Rahmat/Rachmat, Fatimah/Fatima), in doubled
    consonants (Muhammad/Muhamad) and in a few consonant pairs (J/Y, F/V, Z/J, Q/K, KH/H,
    SY/S, DH/D, TH/T). The key keeps the first letter and the consonant skeleton after
    folding those pairs, with repeated letters collapsed.
    """
    key = token
    for old, new in (("KH", "H"), ("SY", "S"), ("DH", "D"), ("TH", "T"), ("PH", "F"), ("Q", "K"),
                     ("X", "KS"), ("V", "F"), ("Z", "J"), ("Y", "J"), ("C", "K")):
        key = key.str.replace_all(old, new, literal=True)
    first = key.str.slice(0, 1).str.replace_all("[EIOU]", "A")
    rest = key.str.slice(1).str.replace_all(r"[AEIOUH]", "")
    return _collapse_doubles(first + rest)


def _collapse_doubles(text: pl.Expr) -> pl.Expr:
    for letter in "BCDFGJKLMNPRSTW":
        text = text.str.replace_all(letter + letter + "+", letter)
    return text


NAME_COLUMNS = ["name_patronym", "name_std", "name_sorted", "name_first", "name_last", "name_tokens",
                "key_first", "key_last", "key_name"]


def standardise_names(frame: pl.DataFrame | pl.LazyFrame, column: str = "nama") -> pl.DataFrame | pl.LazyFrame:
    """Add name_std, name_patronym, name_sorted, name_first, name_last, name_tokens (count)
    and phonetic keys key_first, key_last, key_name.

    Names repeat a great deal (115 thousand distinct names among 3.5 million registry
    rows), so each distinct name is standardised once and joined back."""
    lazy = isinstance(frame, pl.LazyFrame)
    distinct = frame.select(pl.col(column).unique()).filter(pl.col(column).is_not_null())
    standard = _standardise_distinct(distinct.collect() if lazy else distinct, column).select(column, *NAME_COLUMNS)
    return frame.join(standard.lazy() if lazy else standard, on=column, how="left", maintain_order="left")


def _standardise_distinct(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    frame = frame.with_columns(_clean=modern_spelling(clean_name(pl.col(column))))
    marker = r"\s(" + "|".join(PATRONYM_MARKERS) + r")\s"
    frame = frame.with_columns(
        _given=pl.col("_clean").str.replace(marker + ".*$", ""),
        name_patronym=pl.when(pl.col("_clean").str.contains(marker))
        .then(pl.col("_clean").str.replace("^.*?" + marker, ""))
        .otherwise(None),
    )
    tokens = pl.col("_given").str.split(" ")
    first = tokens.list.first().replace(LEADING_ABBREVIATIONS).replace(TOKEN_SPELLINGS)
    rest = tokens.list.slice(1).list.eval(pl.element().replace(TOKEN_SPELLINGS))
    frame = frame.with_columns(_tokens=pl.concat_list([first, rest]))
    frame = frame.with_columns(
        name_std=pl.col("_tokens").list.join(" "),
        name_sorted=pl.col("_tokens").list.sort().list.join(" "),
        name_first=pl.col("_tokens").list.first(),
        name_last=pl.col("_tokens").list.last(),
        name_tokens=pl.col("_tokens").list.len().cast(pl.Int16),
        _keys=pl.col("_tokens").list.eval(phonetic_key(pl.element())),
    )
    frame = frame.with_columns(
        key_first=pl.col("_keys").list.first(),
        key_last=pl.col("_keys").list.last(),
        key_name=pl.col("_keys").list.sort().list.join(" "),
    )
    return frame.drop("_clean", "_given", "_tokens", "_keys")


def nik_digits(nik: pl.Expr) -> pl.Expr:
    """Digits a damaged NIK still carries (".0" suffix dropped), null when fewer than 12:
    enough to find the NIK it was damaged from one or two edits away."""
    digits = nik.str.replace(r"[.,]0+$", "").str.replace_all(r"\D", "")
    return pl.when(digits.str.len_chars() >= 12).then(digits)


def nik_is_own_number(digits: pl.Expr, born: pl.Expr, sex: pl.Expr) -> pl.Expr:
    """The 16 digits could have been issued to this row's person: a kecamatan that exists
    (or existed), this row's birth date and sex (DD + 40 for women, MM, YY) and a serial
    other than 0000. Such a number is its holder's own, not a typo of another's or a
    relative's card. Judged on the digits, so a NIK written '...0001.0' still counts."""
    from pipeline.checks import wilayah

    day = pl.when(sex == "P").then(born.dt.day() + 40).otherwise(born.dt.day())
    encoded = digits.str.slice(6, 2).cast(pl.Int32, strict=False)
    return (
        (digits.str.len_chars() == 16)
        & digits.str.slice(0, 6).is_in(wilayah.kecamatan_codes()["kode"].implode())
        & (digits.str.slice(12, 4) != "0000")
        & (encoded == day)
        & (digits.str.slice(8, 2).cast(pl.Int32, strict=False) == born.dt.month())
        & (digits.str.slice(10, 2).cast(pl.Int32, strict=False) == born.dt.year() % 100)
    ).fill_null(False)


def standardise_records(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """Names, region and NIK keys shared by deduplication and civil-registry linkage.
    Expects nama, nik, tanggal_lahir, kode_wilayah."""
    from pipeline.checks import wilayah
    from pipeline.checks.nik import placeholder_birth_date

    frame = wilayah.with_current_kabupaten(standardise_names(frame), "kode_wilayah", "kab")
    digits = nik_digits(pl.col("nik"))
    placeholder = placeholder_birth_date(pl.col("tanggal_lahir"))
    return frame.with_columns(
        nik_digits=digits,
        birth_year=pl.col("tanggal_lahir").dt.year().cast(pl.Int16),
        dob_placeholder=placeholder,
        nik_consistent=nik_is_own_number(digits, pl.col("tanggal_lahir"), pl.col("jenis_kelamin")),
    )
