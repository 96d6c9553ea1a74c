"""The anomaly catalogue (pipeline/rules/anomalies.toml) is the only place codes, outcomes,
decision values and sheet names are declared: no module spells one of its own, every
module that lists codes reads them from the catalogue, and the README's table is the
catalogue's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline import contract
from pipeline.contract import ANOMALY_CODES, DECISION_VALUES, OUTCOMES, anomaly_rules, sheets
from pipeline.paths import PACKAGE_DIR, PROJECT_DIR

# Words a catalogue name shares with another vocabulary: the outcome `review` is also an
# action, the sheets `NIK` and `Identitas` also column headers. A lone one cannot declare a
# set of outcomes or sheets; a collection that holds one next to another name of its kind
# can (below).
SHARED_WORDS = {"review", "NIK", "Identitas"}


def declared_names() -> dict[str, str]:
    names = {code: "anomaly code" for code in ANOMALY_CODES}
    names |= {value: "decision value" for value in DECISION_VALUES}
    names |= {outcome: "outcome" for outcome in OUTCOMES}
    names |= {sheet: "sheet name" for sheet in sheets()}
    names[contract.workbook_settings()["summary_sheet"]] = "sheet name"
    names[contract.workbook_settings()["national_sheet"]] = "sheet name"
    return names


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if p.name != "contract.py")


def string_constants(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


def test_no_module_declares_a_code_outcome_decision_or_sheet_of_its_own():
    names = declared_names()
    found = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in string_constants(tree):
            if node.value in names and node.value not in SHARED_WORDS:
                found.append(f"{path.relative_to(PROJECT_DIR)}:{node.lineno}: {names[node.value]} {node.value!r}")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                words = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
                kinds = [names[w] for w in words if w in names]
                if any(kinds.count(kind) > 1 for kind in set(kinds)):
                    found.append(f"{path.relative_to(PROJECT_DIR)}:{node.lineno}: a collection of {kinds[0]}s {words}")
    assert not found, "use CODE.X / OUTCOME.x / DECISION.X / contract.sheets() instead:\n" + "\n".join(found)


def test_the_scan_catches_a_module_of_its_own(tmp_path):
    """The rule above bites: a module with its own list of codes or sheets fails it."""
    names = declared_names()
    source = 'GROUPS = {"Meninggal": ("DECEASED",)}\nSHEETS = ("NIK", "Duplikat")\nOUT = ("verified", "review")\n'
    tree = ast.parse(source)
    flagged = {node.value for node in string_constants(tree) if node.value in names and node.value not in SHARED_WORDS}
    assert flagged == {"Meninggal", "DECEASED", "Duplikat", "verified"}


def test_names_used_through_the_namespaces_are_declared():
    namespaces = {"CODE": set(ANOMALY_CODES), "OUTCOME": set(OUTCOMES), "DECISION": set(DECISION_VALUES)}
    unknown = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in namespaces:
                if node.attr not in namespaces[node.value.id]:
                    unknown.append(f"{path.relative_to(PROJECT_DIR)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not unknown, unknown
    with pytest.raises(AttributeError, match="not a declared anomaly code"):
        contract.CODE.DECESED  # noqa: B018


def test_emitters_name_codes_through_the_catalogue():
    literal = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "anomaly_frame":
                code = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "code"), None)
                if isinstance(code, ast.Constant):
                    literal.append(f"{path.relative_to(PROJECT_DIR)}:{node.lineno}")
    assert not literal


def test_every_module_that_lists_codes_covers_the_whole_catalogue():
    from pipeline.decisions import effects_table
    from pipeline.report import xlsx
    from pipeline.sample import ANOMALY_CODES as TRUTH_CODES

    assert set(code for codes in xlsx.GROUPS.values() for code in codes) == set(ANOMALY_CODES)
    assert all(xlsx.GROUPS[sheet] for sheet in sheets()), "a sheet without codes"
    assert set(effects_table()["anomaly_code"]) == set(ANOMALY_CODES)
    for rule in anomaly_rules().values():
        assert set(rule.registry_fields) <= set(xlsx.REGISTRY), rule.code
    for sheet in sheets().values():
        assert set(sheet.blocks) <= set(xlsx.BLOCKS), sheet.name
        assert len(xlsx.decision_message(sheet.name)) <= 255
    assert set(TRUTH_CODES) <= set(ANOMALY_CODES)


def test_catalogue_is_checked_when_loaded(monkeypatch):
    table = contract.catalogue()
    broken = {**table, "codes": {**table["codes"], "NEW_CODE": {**table["codes"]["DECEASED"], "sheet": "Tidak ada"}}}
    with pytest.raises(contract.CatalogueError, match=r"NEW_CODE.*sheet 'Tidak ada'"):
        contract._check_catalogue(broken)
    broken = {**table, "codes": {**table["codes"], "NEW_CODE": {**table["codes"]["DECEASED"], "tolak": "forget"}}}
    with pytest.raises(contract.CatalogueError, match="tolak 'forget'"):
        contract._check_catalogue(broken)


def test_readme_table_is_the_catalogue():
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    assert contract.with_readme_table(readme) == readme, "run: python -m pipeline.contract --readme"
    for code in ANOMALY_CODES:
        assert f"| {code} |" in readme
