"""Where the project's own files live, so code never depends on the working directory."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
RULES_DIR = PACKAGE_DIR / "rules"
DATA_DIR = PROJECT_DIR / "data"
REFERENCE_DIR = DATA_DIR / "reference" / "wilayah"
SAMPLE_DIR = DATA_DIR / "sample"
REPORTS_DIR = PROJECT_DIR / "reports"
