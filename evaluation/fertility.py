"""Tokenizer fertility per language on the evaluation texts, from the tokenizer stage's measurement.

In:  the model's tokenizer and the texts of the other evaluation sets, per language.
Out: per language `tokens_per_word` (fertility; n = words) and `bytes_per_token` (n = tokens), as measured by
     `tokenizer.fertility.measure_fertility`, so this report and `mmbert tokenizer` count the same way.
"""

from __future__ import annotations

from evaluation.models import EncoderUnderTest, backend_tokenizer
from evaluation.results import Result, skipped

TASK = "fertility"
METRICS = (("tokens_per_word", "words"), ("bytes_per_token", "tokens"))


def evaluate_fertility(model: EncoderUnderTest, texts: dict[str, list[str]], languages: list[str] | None
                       ) -> list[Result]:
    from tokenizer.fertility import measure_fertility

    wanted = languages if languages is not None else sorted(texts)
    present = {language: texts[language] for language in wanted if texts.get(language)}
    measured = measure_fertility(present, backend_tokenizer(model)) if present else {}
    results = []
    for language in wanted:
        stats = measured.get(language)
        for metric, count in METRICS:
            if stats is None:
                results.append(skipped(model.name, TASK, language, metric, "no evaluation text in this language"))
            elif not stats.get(count):
                results.append(skipped(model.name, TASK, language, metric, f"the text has no {count}"))
            else:
                results.append(Result(model.name, TASK, language, metric, float(stats[metric]), int(stats[count])))
    return results
