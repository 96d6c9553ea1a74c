"""Evaluate a round against truth labels (from `verval sample`): precision and recall per
anomaly code, and pairwise precision/recall/F1 of the duplicate clusters."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline import contract
from pipeline.contract import CODE, OUTCOME, ROW_OUTCOMES, outcome_rules


def _read_truth(truth_dir: Path, name: str) -> pl.DataFrame:
    for suffix in (".parquet", ".csv"):
        path = truth_dir / f"{name}{suffix}"
        if path.exists():
            return pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
    raise FileNotFoundError(f"{truth_dir}: no {name}.csv or {name}.parquet")


def per_code_scores(predicted: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """anomaly_code, true, predicted, tp, precision, recall over (id_dtks, code) pairs."""
    keys = ["id_dtks", "anomaly_code"]
    predicted = predicted.select(keys).unique()
    truth = truth.select(keys).unique()
    tp = predicted.join(truth, on=keys, how="semi").group_by("anomaly_code").len("tp")
    frame = (
        pl.DataFrame({"anomaly_code": list(contract.ANOMALY_CODES)})
        .join(truth.group_by("anomaly_code").len("true"), on="anomaly_code", how="left")
        .join(predicted.group_by("anomaly_code").len("predicted"), on="anomaly_code", how="left")
        .join(tp, on="anomaly_code", how="left")
        .fill_null(0)
    )
    return frame.with_columns(
        precision=pl.when(pl.col("predicted") > 0).then(pl.col("tp") / pl.col("predicted")),
        recall=pl.when(pl.col("true") > 0).then(pl.col("tp") / pl.col("true")),
    )


def _pairs(sizes: pl.Expr) -> pl.Expr:
    return (sizes * (sizes - 1) / 2).sum()


def pairwise_scores(clusters: pl.DataFrame, truth_rows: pl.DataFrame) -> dict:
    """Pairwise precision/recall/F1 of predicted clusters against true person ids."""
    joined = clusters.select("id_dtks", "cluster_id").join(truth_rows.select("id_dtks", "person_id"), on="id_dtks")
    predicted = joined.group_by("cluster_id").len().select(_pairs(pl.col("len"))).item()
    true = joined.group_by("person_id").len().select(_pairs(pl.col("len"))).item()
    tp = joined.group_by("cluster_id", "person_id").len().select(_pairs(pl.col("len"))).item()
    precision = tp / predicted if predicted else None
    recall = tp / true if true else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {"true_pairs": int(true), "predicted_pairs": int(predicted), "tp": int(tp),
            "precision": precision, "recall": recall, "f1": f1}


def deceased_scores(anomalies: pl.DataFrame, truth_rows: pl.DataFrame) -> dict:
    """DECEASED per person, whatever NIK the row carries (exact or fuzzy link)."""
    alive_rows = truth_rows.filter(pl.col("expect_quarantine") != "1")
    predicted = anomalies.filter(pl.col("anomaly_code") == CODE.DECEASED).select("id_dtks").unique()
    true = alive_rows.filter(pl.col("true_deceased") == "1").select("id_dtks")
    tp = predicted.join(true, on="id_dtks", how="semi").height
    excluded = anomalies.filter((pl.col("anomaly_code") == CODE.DECEASED) & (pl.col("action") == "exclude")).select("id_dtks")
    wrongly_excluded = excluded.join(true, on="id_dtks", how="anti").height
    return {"true": true.height, "predicted": predicted.height, "tp": tp,
            "precision": tp / predicted.height if predicted.height else None,
            "recall": tp / true.height if true.height else None,
            OUTCOME.excluded: excluded.height, "living_people_excluded": wrongly_excluded}


def _to_true_nik(rows: pl.DataFrame, truth_rows: pl.DataFrame) -> int:
    """How many of `rows` (id_dtks, dukcapil_nik) point at the person's true NIK."""
    joined = rows.join(truth_rows.select("id_dtks", "true_nik"), on="id_dtks")
    return joined.filter(pl.col("dukcapil_nik") == pl.col("true_nik")).height


def fuzzy_link_scores(links: pl.DataFrame, truth_rows: pl.DataFrame) -> dict:
    """Share of fuzzy links (not ambiguous) whose suggested NIK is the person's true NIK."""
    fuzzy = links.filter((pl.col("link_method") == "fuzzy") & ~pl.col("ambiguous").fill_null(False))
    correct = _to_true_nik(fuzzy, truth_rows)
    return {"links": fuzzy.height, "correct": correct, "precision": correct / fuzzy.height if fuzzy.height else None}


def fuzzy_resolution_scores(resolution: pl.DataFrame, truth_rows: pl.DataFrame) -> dict:
    """Rows the round resolved to a civil-registry person through the fuzzy link (what
    households, the duplicate search and review build on; a fuzzy link the exact NIK
    overrides is not one), and how many of them to the person's true NIK."""
    fuzzy = resolution.filter(pl.col("resolution") == "fuzzy")
    correct = _to_true_nik(fuzzy, truth_rows)
    return {"resolved": fuzzy.height, "correct": correct, "wrong": fuzzy.height - correct,
            "precision": correct / fuzzy.height if fuzzy.height else None}


RELATION_CLASSES = ("twin", "father_son", "sibling_close")


def _relation_rows(truth_rows: pl.DataFrame, dtks: pl.DataFrame) -> pl.DataFrame:
    """id_dtks, person_id, household, relation per row. Truth written by newer generators
    carries household_id and relation; older truth falls back on the scenario label and
    the row's KK (which misses people whose label another scenario took)."""
    if "relation" in truth_rows.columns:
        return truth_rows.select("id_dtks", "person_id", household=pl.col("household_id"), relation=pl.col("relation"))
    return truth_rows.join(dtks.select("id_dtks", "no_kk"), on="id_dtks").select(
        "id_dtks", "person_id", household=pl.col("no_kk"),
        relation=pl.col("scenario").replace({"father_son_same_name": "father_son"}),
    )


def _merged(pairs: pl.DataFrame, clusters: pl.DataFrame) -> pl.DataFrame:
    cluster = clusters.select("id_dtks", "cluster_id")
    return (
        pairs.join(cluster, on="id_dtks")
        .join(cluster.rename({"id_dtks": "id_dtks_r", "cluster_id": "cluster_r"}), on="id_dtks_r")
        .filter(pl.col("cluster_id") == pl.col("cluster_r"))
    )


def hard_negative_scores(clusters: pl.DataFrame, truth_rows: pl.DataFrame, dtks: pl.DataFrame) -> dict:
    """Pairs of different people who look alike, per class, and how many ended up in one
    cluster: twins, father and son with one name, siblings born close together with
    similar names (all within one household), and different people whose rows carry one
    NIK. Unrelated people with a very common name are counted per row."""
    rows = _relation_rows(truth_rows, dtks)
    result = {}
    for relation in RELATION_CLASSES:
        related = rows.filter(pl.col("relation").str.contains(relation) & pl.col("household").is_not_null())
        pairs = related.join(related, on="household", suffix="_r").filter(
            (pl.col("id_dtks") < pl.col("id_dtks_r")) & (pl.col("person_id") != pl.col("person_id_r"))
        )
        merged = _merged(pairs, clusters).height
        result[relation] = {"pairs": pairs.height, "merged": merged, "rate": merged / pairs.height if pairs.height else None}
    nik = dtks.select("id_dtks", nik=pl.col("nik").str.strip_chars().str.strip_prefix("'")).filter(
        pl.col("nik").str.contains(r"^[0-9]{16}$")
    ).join(truth_rows.select("id_dtks", "person_id"), on="id_dtks")
    shared = nik.join(nik, on="nik", suffix="_r").filter(
        (pl.col("id_dtks") < pl.col("id_dtks_r")) & (pl.col("person_id") != pl.col("person_id_r"))
    )
    merged = _merged(shared, clusters).height
    result["shared_nik"] = {"pairs": shared.height, "merged": merged, "rate": merged / shared.height if shared.height else None}
    people = clusters.select("id_dtks", "cluster_id").join(truth_rows.select("id_dtks", "person_id", "scenario"), on="id_dtks")
    mixed = people.group_by("cluster_id").agg(pl.col("person_id").n_unique().alias("people")).filter(pl.col("people") > 1)
    common = people.filter(pl.col("scenario") == "common_name")
    result["common_name"] = {
        "rows": common.height,
        "rows_merged_with_another_person": common.join(mixed, on="cluster_id", how="semi").height,
    }
    return result


def harm_scores(out_dir: Path, truth_rows: pl.DataFrame, ineligible_rows: pl.DataFrame | None = None) -> dict:
    """What a wrong verdict costs people: living eligible people (not on an ineligibility
    list: `ineligible_rows` holds their id_dtks) none of whose rows stays verified or in
    review (every parsed row excluded), exclusions that name another person as the
    duplicate's original, and the review load."""
    outcomes = pl.concat([
        pl.read_parquet(out_dir / outcome_rules()[outcome].file, columns=["id_dtks"]).with_columns(outcome=pl.lit(outcome))
        for outcome in ROW_OUTCOMES
    ])
    rows = outcomes.join(truth_rows.select("id_dtks", "person_id", "true_deceased", "scenario"), on="id_dtks")
    per_person = rows.group_by("person_id").agg(
        alive=(pl.col("true_deceased") == "0").all(),
        all_excluded=(pl.col("outcome") == OUTCOME.excluded).all(),
        scenarios=pl.col("scenario").unique().sort().str.join(","),
    )
    cut_off = per_person.filter(pl.col("alive") & pl.col("all_excluded"))
    if ineligible_rows is not None:
        listed = truth_rows.join(ineligible_rows, on="id_dtks", how="semi").select("person_id")
        cut_off = cut_off.join(listed, on="person_id", how="anti")
    # Budget: a person with more than one row kept for payment is paid twice.
    paid_twice = rows.filter(pl.col("outcome") == OUTCOME.verified).group_by("person_id").len().filter(pl.col("len") > 1)
    anomalies = pl.read_parquet(out_dir / "anomalies.parquet")
    person = truth_rows.select("id_dtks", "person_id")
    excluded_duplicates = anomalies.filter((pl.col("anomaly_code") == CODE.DUPLICATE_PERSON) & (pl.col("action") == "exclude"))
    wrong_original = (
        excluded_duplicates.join(person, on="id_dtks")
        .join(person.rename({"id_dtks": "related_id", "person_id": "related_person"}), on="related_id")
        .filter(pl.col("person_id") != pl.col("related_person"))
    )
    codes_of_cut_off = (
        anomalies.filter(pl.col("action") == "exclude").join(person, on="id_dtks")
        .join(cut_off.select("person_id"), on="person_id", how="semi")
        .group_by("anomaly_code").agg(pl.col("person_id").n_unique().alias("people")).sort("anomaly_code")
    )
    rows_in = outcomes.height
    review = outcomes.filter(pl.col("outcome") == OUTCOME.review).height
    return {
        "living_people_all_rows_excluded": cut_off.height,
        "living_people_all_rows_excluded_by_code": dict(codes_of_cut_off.iter_rows()),
        "living_people_all_rows_excluded_scenarios": dict(
            cut_off.group_by("scenarios").len().sort("len", descending=True).head(8).iter_rows()
        ),
        "duplicate_exclusions": excluded_duplicates.height,
        "duplicate_exclusions_pointing_at_another_person": wrong_original.height,
        "people_paid_more_than_once": paid_twice.height,
        "review_rows": review,
        "review_per_1000_rows": round(1000 * review / rows_in, 2) if rows_in else None,
    }


def evaluate_round(out_dir: Path, truth_dir: Path) -> dict:
    out_dir, truth_dir = Path(out_dir), Path(truth_dir)
    truth_rows = _read_truth(truth_dir, "truth_rows")
    anomalies = pl.read_parquet(out_dir / "anomalies.parquet")
    # The truth labels count DECEASED and RELOCATED through the exact NIK only; links
    # through a fuzzy match (score set) are scored per person below.
    exact_only = anomalies.filter(~(pl.col("anomaly_code").is_in([CODE.DECEASED, CODE.RELOCATED]) & pl.col("score").is_not_null()))
    truth_anomalies = _read_truth(truth_dir, "truth_anomalies")
    codes = per_code_scores(exact_only, truth_anomalies)
    listed = truth_anomalies.filter(pl.col("anomaly_code") == CODE.NOT_ELIGIBLE).select("id_dtks")
    wrongly_listed = anomalies.filter((pl.col("anomaly_code") == CODE.NOT_ELIGIBLE) & (pl.col("action") == "exclude")).join(
        listed, on="id_dtks", how="anti")
    pairs = pairwise_scores(pl.read_parquet(out_dir / "duplicate_clusters.parquet"), truth_rows)
    quarantined = pl.read_parquet(out_dir / "quarantine.parquet").filter(pl.col("source") == "dtks")
    expected_quarantine = truth_rows.filter(pl.col("expect_quarantine") == "1")
    return {
        "per_code": codes,
        "duplicate_pairs": pairs,
        "deceased_per_person": deceased_scores(anomalies, truth_rows),
        "hard_negatives": hard_negative_scores(
            pl.read_parquet(out_dir / "duplicate_clusters.parquet"), truth_rows,
            pl.read_parquet(out_dir / "staging" / "dtks.parquet").select("id_dtks", "no_kk", "nik"),
        ),
        "fuzzy_links": fuzzy_link_scores(pl.read_parquet(out_dir / "dukcapil_links.parquet"), truth_rows),
        "fuzzy_resolutions": fuzzy_resolution_scores(pl.read_parquet(out_dir / "resolution.parquet"), truth_rows),
        "harm": harm_scores(out_dir, truth_rows, listed),
        "not_eligible_exclusions_of_people_not_listed": wrongly_listed.height,
        "quarantine": {"expected": expected_quarantine.height, OUTCOME.quarantined: quarantined.height},
    }
