"""Evaluate a round against truth labels (from `verval sample`): precision and recall per
anomaly code, and pairwise precision/recall/F1 of the duplicate clusters."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline import contract


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
    predicted = anomalies.filter(pl.col("anomaly_code") == "DECEASED").select("id_dtks").unique()
    true = alive_rows.filter(pl.col("true_deceased") == "1").select("id_dtks")
    tp = predicted.join(true, on="id_dtks", how="semi").height
    excluded = anomalies.filter((pl.col("anomaly_code") == "DECEASED") & (pl.col("action") == "exclude")).select("id_dtks")
    wrongly_excluded = excluded.join(true, on="id_dtks", how="anti").height
    return {"true": true.height, "predicted": predicted.height, "tp": tp,
            "precision": tp / predicted.height if predicted.height else None,
            "recall": tp / true.height if true.height else None,
            "excluded": excluded.height, "living_people_excluded": wrongly_excluded}


def fuzzy_link_scores(links: pl.DataFrame, truth_rows: pl.DataFrame) -> dict:
    """Share of fuzzy links (not ambiguous) whose suggested NIK is the person's true NIK."""
    fuzzy = links.filter((pl.col("link_method") == "fuzzy") & ~pl.col("ambiguous").fill_null(False))
    joined = fuzzy.join(truth_rows.select("id_dtks", "true_nik"), on="id_dtks")
    correct = joined.filter(pl.col("dukcapil_nik") == pl.col("true_nik")).height
    return {"links": fuzzy.height, "correct": correct, "precision": correct / fuzzy.height if fuzzy.height else None}


def evaluate_round(out_dir: Path, truth_dir: Path) -> dict:
    out_dir, truth_dir = Path(out_dir), Path(truth_dir)
    truth_rows = _read_truth(truth_dir, "truth_rows")
    anomalies = pl.read_parquet(out_dir / "anomalies.parquet")
    # The truth labels count DECEASED and RELOCATED through the exact NIK only; links
    # through a fuzzy match (score set) are scored per person below.
    exact_only = anomalies.filter(~(pl.col("anomaly_code").is_in(["DECEASED", "RELOCATED"]) & pl.col("score").is_not_null()))
    codes = per_code_scores(exact_only, _read_truth(truth_dir, "truth_anomalies"))
    pairs = pairwise_scores(pl.read_parquet(out_dir / "duplicate_clusters.parquet"), truth_rows)
    quarantined = pl.read_parquet(out_dir / "quarantine.parquet").filter(pl.col("source") == "dtks")
    expected_quarantine = truth_rows.filter(pl.col("expect_quarantine") == "1")
    return {
        "per_code": codes,
        "duplicate_pairs": pairs,
        "deceased_per_person": deceased_scores(anomalies, truth_rows),
        "fuzzy_links": fuzzy_link_scores(pl.read_parquet(out_dir / "dukcapil_links.parquet"), truth_rows),
        "quarantine": {"expected": expected_quarantine.height, "quarantined": quarantined.height},
    }
