"""Languages: which exist, in which script, how much data each has, when each enters training, how often it is sampled.

- `languages.registry`: 1,903 `xxx_Scrp` labels (FineWeb-2's table + mmBERT's extra languages) and `normalize`, which
  maps any LID model's label, ISO 639 code or BCP-47 tag onto one of them.
- `languages.scripts`: the dominant ISO 15924 script of a text.
- `languages.schedule`: training phases (mmBERT's 60 → 110 → 1833 by default, or a YAML file).
- `languages.sampling`: temperature sampling p_i ∝ n_i^τ and per-language token budgets with epoch caps.
- `languages.mixture` (+ `mixture_cli`): each phase's language mix materialised from packed shards, a Beam job
  (`mmbert languages mix`).
"""
