"""Evaluation: score any encoder per language and report where it is weak.

In:  a model (training checkpoint, run directory or Hugging Face encoder directory), the packed shards' held-out
     split, bitext TSVs and a classification set (built-in: the UDHR sets under data/retrieval and data/classification).
Out: `mmbert eval --output DIR`: results.csv / results.json (model, task, language, metric, value, n, status),
     report.md and PNG plots; `mmbert eval compare` sets several such directories side by side.

Modules: models (loading), metrics (pure functions), mlm / retrieval / classification / fertility (one task each),
results (rows and files), report (markdown, plots, comparison), udhr (builds the shipped data), cli.
"""
