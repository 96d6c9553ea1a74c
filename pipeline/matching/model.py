"""The matching model as data: load, validate, save; turn m/u into weights."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

from pipeline.paths import RULES_DIR

DEFAULT_MODEL_PATH = RULES_DIR / "model.json"
LINK_MODEL_PATH = RULES_DIR / "link_model.json"


def load_model(path: Path | None = None) -> dict:
    path = Path(path) if path else DEFAULT_MODEL_PATH
    with open(path, encoding="utf-8") as handle:
        model = json.load(handle)
    validate_model(model, path)
    return model


def save_model(model: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(model, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def validate_model(model: dict, source: Path | str = "model") -> None:
    """ValueError saying what is wrong when `model` is no matching model the stages can
    read (its structure first, so no KeyError or TypeError escapes from a stranger's file)."""
    if not isinstance(model, dict):
        raise ValueError(f"{source}: not a matching model (a JSON object is needed)")
    for key in ("prior_log2_odds", "thresholds", "blocking_rules", "comparisons"):
        if key not in model:
            raise ValueError(f"{source}: matching model lacks '{key}'")
    for comparison in model["comparisons"]:
        levels = comparison.get("levels") if isinstance(comparison, dict) else None
        if not isinstance(levels, list) or not levels or not all(
            isinstance(level, dict) and {"label", "when", "m", "u"} <= level.keys() and isinstance(level["when"], str)
            and all(isinstance(level[k], (int, float)) for k in ("m", "u")) for level in levels
        ) or not isinstance(comparison.get("name"), str):
            raise ValueError(f"{source}: not a matching model (each comparison needs a name and levels with "
                             "label, when, m and u)")
        if comparison["levels"][-1]["when"].strip().upper() != "TRUE":
            raise ValueError(f"{source}: comparison '{comparison['name']}' must end with a catch-all level (when: TRUE)")
        for level in comparison["levels"]:
            if not (0 < level["m"] <= 1 and 0 < level["u"] <= 1):
                raise ValueError(f"{source}: {comparison['name']}.{level['label']}: m and u must be in (0, 1]")


def level_weight(level: dict) -> float:
    return math.log2(level["m"] / level["u"])


def with_weights(model: dict) -> dict:
    """A copy of the model with each level's weight written out, for auditing."""
    model = copy.deepcopy(model)
    for comparison in model["comparisons"]:
        for level in comparison["levels"]:
            level["weight"] = round(level_weight(level), 4)
    return model


def probability_sql(log2_odds_sql: str) -> str:
    return f"1.0 / (1.0 + pow(2.0, -({log2_odds_sql})))"
