"""mmbert: train massively multilingual encoders end to end (corpus → tokens → ModernBERT-style encoder → reports).

This package holds the `mmbert` command line and the small infrastructure every stage shares (errors, atomic
outputs, cache paths). The stages themselves live in the top-level packages `languages`, `corpus`, `tokenizer`,
`training` and `evaluation`.
"""

__version__ = "0.1.0"
