"""Prefect flows: wiring only; the work lives in pipeline.round and the stage modules."""
