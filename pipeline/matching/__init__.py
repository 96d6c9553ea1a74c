"""Record matching, in the textbook's stages: standardise -> block -> compare -> score -> cluster,
plus link (to the civil registry). The model (blocking rules, comparison levels, weights,
thresholds) is a JSON document in pipeline/rules/model.json, saved with every run."""
