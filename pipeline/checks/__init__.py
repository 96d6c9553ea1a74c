"""Checks on single records: NIK structure, region codes, data-quality expectations."""
