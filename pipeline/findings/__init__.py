"""Findings beyond the civil-registry questions: ineligibility lists, desil per program,
household (KK) consistency. Each module turns tables into anomalies of the catalogue's
codes (pipeline/rules/anomalies.toml) by the rules of pipeline/rules/eligibility.toml."""
