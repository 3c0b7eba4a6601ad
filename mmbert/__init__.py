"""mmbert: train massively multilingual encoders end to end (corpus → tokens → ModernBERT-style encoder → reports).

This package holds the `mmbert` command line, `mmbert run` (a whole recipe, stage by stage), and what every stage
shares (errors, atomic outputs, argument types, Beam options, plots, cache paths, the UDHR data helpers). The stages
themselves live in the top-level packages `languages`, `corpus`, `tokenizer`, `training` and `evaluation`.
"""

__version__ = "0.1.0"
