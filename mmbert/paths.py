"""Where things live: the user cache (downloaded tokenizers) and the data shipped in the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real data shipped with the repository for tests and the demo (see data/README.md for sources and licences).
DATA_DIR = REPO_ROOT / "data"


def cache_dir() -> Path:
    """$MMBERT_CACHE, else $XDG_CACHE_HOME/mmbert, else ~/.cache/mmbert."""
    if os.environ.get("MMBERT_CACHE"):
        return Path(os.environ["MMBERT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmbert"


def is_remote(path: str) -> bool:
    """A path on a filesystem Beam reaches by scheme (gs://, s3://, hdfs://, …), not a local one."""
    return "://" in str(path)
