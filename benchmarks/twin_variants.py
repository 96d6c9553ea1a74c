"""Twins the generator never made: how many are merged, per kind of twin.

`verval sample` makes twins one way (same sex, same KK, consecutive serials, names from its
own pools). A registry the model was not calibrated on makes them other ways. This script
takes a generated registry, picks anchor people (clean rows: one DTKS row, their own NIK,
one Dukcapil record) and gives each a twin drawn from a grid of kinds that the generator
does not produce, each dimension drawn independently:

  sex       same | opposite (boy-girl twins: the girl's NIK day is +40)
  name      fresh given name | one letter apart | first token shared, last replaced |
            identical (a generator drawing names from a small pool)
  kk        same KK | own KK, same desa (adult twins) | own KK, another desa | blank in DTKS
  serial    next serial | a gap of 2-60 (serials not issued in birth order)
  dukcapil  present | missing
  dtks_nik  own | one digit mistyped | blank | the other twin's NIK (a sibling's card)
  anchor    the anchor's own DTKS NIK intact | mistyped (one digit) | blank

`--relation sibling` (born 1-3 years apart) or `--relation parent` (20-40 years older, often
of one name) adds those relatives instead, on the same grid; `--source DIR` runs another
checkout of verval on the same registry, to compare two versions.

It writes the registry with the twins added, runs `verval run --no-prefect` on it and
prints, per dimension and for the worst combinations, the share of twin pairs merged into
one duplicate cluster and the share with a twin excluded. Per-record work is polars and
numpy; the twins are rows like any other.

    .venv/bin/verval sample --n 200000 --seed 11 --format parquet --out /tmp/tw/base
    .venv/bin/python benchmarks/twin_variants.py --base /tmp/tw/base --work /tmp/tw --twins 6000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

DIMENSIONS = {
    "sex": (("same", 0.6), ("opposite", 0.4)),
    "name": (("fresh", 0.4), ("one_letter", 0.3), ("shared_first", 0.2), ("identical", 0.1)),
    "kk": (("same", 0.5), ("own_same_desa", 0.2), ("own_other_desa", 0.15), ("blank", 0.15)),
    "serial": (("next", 0.6), ("gap", 0.4)),
    "dukcapil": (("present", 0.7), ("missing", 0.3)),
    "dtks_nik": (("own", 0.55), ("typo", 0.15), ("blank", 0.15), ("twins_nik", 0.15)),
    "anchor_nik": (("own", 0.8), ("typo", 0.1), ("blank", 0.1)),
}
PREFIX_TOKENS = ("SITI", "NUR", "NURUL", "MUHAMMAD", "MUH", "MOH", "AHMAD", "ABDUL", "I", "NI", "SRI", "DWI", "TRI", "EKA",
                 "PUTU", "MADE", "KADEK", "KOMANG", "KETUT", "WAYAN", "GEDE", "LUH", "ANDI")


def draw(rng: np.random.Generator, n: int) -> pl.DataFrame:
    columns = {}
    for name, kinds in DIMENSIONS.items():
        labels, weights = zip(*kinds)
        columns[name] = np.array(labels)[rng.choice(len(labels), size=n, p=np.array(weights) / sum(weights))]
    return pl.DataFrame(columns)


def pick_anchors(dtks: pl.DataFrame, dukcapil: pl.DataFrame, truth: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """Clean, living people with one DTKS row carrying their own NIK and one Dukcapil record."""
    one_row = truth.group_by("person_id").len().filter(pl.col("len") == 1).select("person_id")
    clean = truth.filter((pl.col("scenario") == "clean") & (pl.col("relation").fill_null("") == "")
                         & (pl.col("true_deceased") == "0")).join(one_row, on="person_id", how="semi")
    once = dukcapil.group_by("nik").len().filter(pl.col("len") == 1).select("nik")
    anchors = (
        dtks.join(clean.select("id_dtks", "true_nik"), on="id_dtks")
        .filter((pl.col("nik") == pl.col("true_nik")) & pl.col("nama").str.contains(r"^[A-Z ]+$")
                & pl.col("tanggal_lahir").str.contains(r"^\d{4}-\d{2}-\d{2}$"))
        .join(once, on="nik", how="semi")
        .sort("id_dtks")
    )
    return anchors.sample(min(n, anchors.height), seed=seed, shuffle=True)


def given_names(dtks: pl.DataFrame) -> dict[str, pl.Series]:
    """Given-name tokens in use, per sex (L/P), to name a twin of either sex."""
    sex = pl.col("jenis_kelamin").replace({"1": "L", "LAKI-LAKI": "L", "2": "P", "PEREMPUAN": "P"})
    tokens = dtks.select(sex.alias("sex"), token=pl.col("nama").str.split(" ")).explode("token").filter(
        pl.col("token").str.contains(r"^[A-Z]{3,}$") & ~pl.col("token").is_in(list(PREFIX_TOKENS) + ["BIN", "BINTI"]))
    return {s: tokens.filter(pl.col("sex") == s)["token"].unique().sort() for s in ("L", "P")}


def one_letter(token: pl.Expr) -> pl.Expr:
    """RINA -> RINI, PUTRA -> PUTRI, HASAN -> HASIN: the last vowel changed."""
    swap = pl.when(token.str.contains(r"A[^AEIOU]*$")).then(token.str.replace(r"A([^AEIOU]*)$", "I$1")) \
        .otherwise(token.str.replace(r"[EIOU]([^AEIOU]*)$", "A$1"))
    return pl.when(swap == token).then(token + pl.lit("A")).otherwise(swap)


def mistype(nik: pl.Expr, position: pl.Expr, digit: pl.Expr) -> pl.Expr:
    """One digit of the NIK replaced by another (never by itself)."""
    old = nik.str.slice(position, 1).cast(pl.Int32)
    new = ((old + digit) % 10).cast(pl.String)
    return nik.str.slice(0, position) + new + nik.str.slice(position + 1)


RELATIONS = ("twin", "sibling", "parent")


def build(base: Path, out: Path, n: int, seed: int, relation: str = "twin") -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    dtks = pl.read_parquet(base / "dtks.parquet")
    dukcapil = pl.read_parquet(base / "dukcapil.parquet")
    truth = pl.read_parquet(base / "truth_rows.parquet")
    anchors = pick_anchors(dtks, dukcapil, truth, n, seed)
    n = anchors.height
    kinds = draw(rng, n)
    pools = given_names(dtks)
    female = anchors["jenis_kelamin"].is_in(["P", "2", "PEREMPUAN"]).to_numpy()
    twin_female = np.where(kinds["sex"].to_numpy() == "opposite", ~female, female)
    fresh = np.where(twin_female, pools["P"].gather(rng.integers(0, len(pools["P"]), n)).to_numpy(),
                     pools["L"].gather(rng.integers(0, len(pools["L"]), n)).to_numpy())

    frame = anchors.with_columns(
        kinds, twin_female=twin_female, fresh=fresh,
        serial_step=np.where(kinds["serial"].to_numpy() == "next", 1, rng.integers(2, 61, n)),
        typo_pos=rng.integers(6, 16, n), typo_digit=rng.integers(1, 10, n),
        anchor_typo_pos=rng.integers(6, 16, n), anchor_typo_digit=rng.integers(1, 10, n),
        kk_serial=rng.integers(1, 10_000, n), desa_step=rng.integers(1, 20, n),
        # The relative's birth year: a twin's is the anchor's; a sibling is born 1-3 years
        # apart, a parent 20-40 years earlier (father and son may carry one name).
        years=np.zeros(n, np.int64) if relation == "twin" else rng.choice([-3, -2, -1, 1, 2, 3], n) if relation == "sibling"
        else -rng.integers(20, 41, n),
        twin_id=pl.format("TWIN{}", pl.int_range(1, n + 1).cast(pl.String).str.zfill(6)),
    )
    tokens = pl.col("nama").str.split(" ")
    given_at = tokens.list.eval(~pl.element().is_in(list(PREFIX_TOKENS))).list.arg_max()
    with_given = frame.with_columns(_tokens=tokens, _at=given_at)
    given = pl.col("_tokens").list.get(pl.col("_at"))
    last_at = pl.col("_tokens").list.len() - 1

    def replace_token(at: pl.Expr, value: pl.Expr) -> pl.Expr:
        return pl.concat_list(pl.col("_tokens").list.head(at), pl.concat_list(value),
                              pl.col("_tokens").list.slice(at + 1)).list.join(" ")

    twin_name = (
        pl.when(pl.col("name") == "identical").then(pl.col("nama"))
        .when(pl.col("name") == "one_letter").then(replace_token(pl.col("_at"), one_letter(given)))
        .when((pl.col("name") == "shared_first") & (last_at > pl.col("_at"))).then(replace_token(last_at, pl.col("fresh")))
        .otherwise(replace_token(pl.col("_at"), pl.col("fresh")))
    )
    born = pl.col("tanggal_lahir").str.to_date()
    leap_day = (born.dt.month() == 2) & (born.dt.day() == 29)
    shifted = pl.date(born.dt.year() + pl.col("years"), born.dt.month(), pl.when(leap_day).then(28).otherwise(born.dt.day()))
    shifted = pl.when(shifted > pl.date(2026, 11, 1)).then(shifted.dt.offset_by("-4y")).otherwise(shifted)
    twin_born = pl.when(pl.col("years") == 0).then(born).otherwise(shifted)
    day = twin_born.dt.day() + 40 * pl.col("twin_female").cast(pl.Int32)
    # A twin's serial follows the anchor's; a sibling's or parent's birth date has its own serials.
    twin_serial = pl.when(pl.col("years") == 0).then(pl.col("nik").str.slice(12, 4).cast(pl.Int32)).otherwise(0) + pl.col("serial_step")
    framed = with_given.with_columns(
        twin_name=twin_name, twin_born=twin_born.dt.strftime("%Y-%m-%d"),
        twin_nik=pl.col("nik").str.slice(0, 6) + day.cast(pl.String).str.zfill(2) + twin_born.dt.strftime("%m%y")
        + twin_serial.cast(pl.String).str.zfill(4),
    ).drop("_tokens", "_at")
    # A twin's number must be nobody else's.
    taken = pl.concat([dukcapil.select("nik"), dtks.select("nik")]).unique()
    framed = framed.join(taken.with_columns(clash=pl.lit(True)), left_on="twin_nik", right_on="nik", how="left").filter(
        pl.col("clash").is_null()).drop("clash")
    framed = framed.unique("twin_nik", keep="first", maintain_order=True)

    cap = dukcapil.join(framed.select("nik"), on="nik", how="semi")
    cap_of = framed.join(cap.select("nik", cap_kk="no_kk", cap_desa="kode_wilayah"), on="nik")
    new_kk = pl.col("nik").str.slice(0, 6) + pl.lit("0101") + (pl.col("kk_serial") % 100).cast(pl.String).str.zfill(2) \
        + pl.col("kk_serial").cast(pl.String).str.zfill(4)
    # Another desa of the anchor's kecamatan, as Dukcapil knows it.
    desa_of_kec = dukcapil.select(desa="kode_wilayah").unique().sort("desa").group_by(kec=pl.col("desa").str.slice(0, 6)).agg("desa")
    cap_of = cap_of.join(desa_of_kec, left_on=pl.col("cap_desa").str.slice(0, 6), right_on="kec", how="left")
    other_desa = pl.col("desa").list.get(pl.col("desa_step") % pl.col("desa").list.len())
    framed = cap_of.with_columns(
        twin_kk_dtks=pl.when(pl.col("kk") == "same").then(pl.col("no_kk")).when(pl.col("kk") == "blank").then(pl.lit(None))
        .otherwise(new_kk),
        twin_kk_cap=pl.when(pl.col("kk").is_in(["same", "blank"])).then(pl.col("cap_kk")).otherwise(new_kk),
        twin_desa=pl.when(pl.col("kk") == "own_other_desa").then(other_desa).otherwise(pl.col("kode_wilayah")),
        twin_desa_cap=pl.when(pl.col("kk") == "own_other_desa").then(other_desa).otherwise(pl.col("cap_desa")),
        twin_dtks_nik=pl.when(pl.col("dtks_nik") == "own").then(pl.col("twin_nik"))
        .when(pl.col("dtks_nik") == "typo").then(mistype(pl.col("twin_nik"), pl.col("typo_pos"), pl.col("typo_digit")))
        .when(pl.col("dtks_nik") == "blank").then(pl.lit(""))
        .otherwise(pl.col("nik")),
        anchor_dtks_nik=pl.when(pl.col("anchor_nik") == "own").then(pl.col("nik"))
        .when(pl.col("anchor_nik") == "typo").then(mistype(pl.col("nik"), pl.col("anchor_typo_pos"), pl.col("anchor_typo_digit")))
        .otherwise(pl.lit("")),
        twin_sex=pl.when(pl.col("twin_female")).then(pl.lit("P")).otherwise(pl.lit("L")),
    )

    twin_rows = framed.select(
        id_dtks="twin_id", nik="twin_dtks_nik", no_kk="twin_kk_dtks", nama="twin_name", jenis_kelamin="twin_sex",
        tempat_lahir="tempat_lahir", tanggal_lahir="twin_born", alamat="alamat", kode_wilayah="twin_desa",
        program="program", desil="desil", hubungan_keluarga="hubungan_keluarga",
    )
    anchor_niks = framed.select("id_dtks", new_nik="anchor_dtks_nik")
    dtks_out = pl.concat([
        dtks.join(anchor_niks, on="id_dtks", how="left").with_columns(nik=pl.coalesce("new_nik", "nik")).drop("new_nik"),
        twin_rows.select(dtks.columns),
    ]).sort("id_dtks")
    twin_cap = (
        framed.filter(pl.col("dukcapil") == "present")
        .join(cap.drop("no_kk", "kode_wilayah"), on="nik")
        .select(nik="twin_nik", no_kk="twin_kk_cap", nama="twin_name", jenis_kelamin=pl.when(pl.col("twin_female"))
                .then(pl.lit("PEREMPUAN")).otherwise(pl.lit("LAKI-LAKI")), tempat_lahir="tempat_lahir_right",
                tanggal_lahir="twin_born", alamat="alamat_right", kode_wilayah="twin_desa_cap",
                tanggal_meninggal=pl.lit(None, pl.String), hubungan_keluarga="hubungan_keluarga_right")
    )
    out.mkdir(parents=True, exist_ok=True)
    dtks_out.write_parquet(out / "dtks.parquet")
    pl.concat([dukcapil, twin_cap.select(dukcapil.columns)]).write_parquet(out / "dukcapil.parquet")
    pairs = framed.select("id_dtks", "twin_id", *DIMENSIONS)
    pairs.write_parquet(out / "twins.parquet")
    return pairs


def score(pairs: pl.DataFrame, round_dir: Path) -> pl.DataFrame:
    clusters = pl.read_parquet(round_dir / "duplicate_clusters.parquet", columns=["id_dtks", "cluster_id"])
    excluded = pl.read_parquet(round_dir / "excluded.parquet", columns=["id_dtks"]).with_columns(x=pl.lit(True))
    cid = clusters.rename({"cluster_id": "c"})
    return (
        pairs.join(cid, on="id_dtks", how="left").join(cid.rename({"id_dtks": "twin_id", "c": "c_twin"}), on="twin_id", how="left")
        .join(excluded, on="id_dtks", how="left").join(excluded.rename({"id_dtks": "twin_id", "x": "x_twin"}), on="twin_id", how="left")
        .with_columns(merged=(pl.col("c") == pl.col("c_twin")).fill_null(False),
                      excluded=pl.col("x").fill_null(False) | pl.col("x_twin").fill_null(False))
        .drop("c", "c_twin", "x", "x_twin")
    )


def report(scored: pl.DataFrame, relation: str) -> dict:
    def rates(by: list[str]) -> pl.DataFrame:
        return scored.group_by(by).agg(pairs=pl.len(), merged=pl.col("merged").sum(), excluded=pl.col("excluded").sum()).with_columns(
            merged_rate=(pl.col("merged") / pl.col("pairs")).round(4)).sort(by)

    total = {"pairs": scored.height, "merged": int(scored["merged"].sum()), "excluded": int(scored["excluded"].sum())}
    total["merged_rate"] = round(total["merged"] / total["pairs"], 4)
    print(f"{relation} pairs {total['pairs']}, merged {total['merged']} ({100 * total['merged_rate']:.2f} %), "
          f"one of the two excluded {total['excluded']}")
    with pl.Config(tbl_rows=60, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        for dim in DIMENSIONS:
            print(rates([dim]))
        worst = rates(["name", "kk", "dukcapil", "dtks_nik"]).filter(pl.col("merged") > 0).sort("merged", descending=True)
        print("combinations with a merge (name, kk, dukcapil, dtks_nik):")
        print(worst.head(25))
    return {"relation": relation, "total": total, **{dim: rates([dim]).to_dicts() for dim in DIMENSIONS}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, type=Path, help="a registry from `verval sample --format parquet`")
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--twins", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--relation", choices=RELATIONS, default="twin",
                        help="the relative added to each anchor: a twin, a sibling born 1-3 years apart, a parent 20-40 years older")
    parser.add_argument("--model", help="matching model JSON passed to verval run")
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1],
                        help="a checkout of verval to run (default: this one), to compare two versions on the same twins")
    parser.add_argument("--score-only", action="store_true", help="score the existing round in --work")
    args = parser.parse_args()
    args.work, args.base = args.work.resolve(), args.base.resolve()  # verval runs in --source
    data, round_dir = args.work / "data", args.work / "round"
    if not args.score_only:
        pairs = build(args.base, data, args.twins, args.seed, args.relation)
        command = [sys.executable, "-m", "pipeline.cli", "run", "--no-prefect", "--quiet", "--dtks", str(data / "dtks.parquet"),
                   "--dukcapil", str(data / "dukcapil.parquet"), "--out", str(round_dir), "--as-of", "2026-11-21",
                   "--decision-log", str(args.work / "decisions.jsonl"), "--objections", str(args.work / "objections.jsonl")]
        if args.model:
            command += ["--model", args.model]
        subprocess.run(command, check=True, cwd=args.source)
    pairs = pl.read_parquet(data / "twins.parquet")
    result = report(score(pairs, round_dir), args.relation)
    (args.work / "twin_variants.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
