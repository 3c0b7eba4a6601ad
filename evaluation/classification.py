"""Text classification per language: fine-tune a head on the encoder, report accuracy per test language.

In:  a local jsonl / jsonl.gz / csv / parquet file, or a `datasets` directory (`save_to_disk`), with columns `text`
     (and optionally `text_pair`), `label`, `language`, and `split` (`train` / `test`; a DatasetDict brings its own
     splits). Default: the shipped UDHR topic set (data/classification/udhr_topics.jsonl.gz, see evaluation/udhr.py).
Out: per test language `accuracy` of a head trained on the train split of every language, and — when the train split
     has more than one language — `zero_shot_accuracy` of a head trained on one language only (`transfer_from`,
     English by default), XNLI's cross-lingual transfer setting.

By default the encoder is frozen: mean-pooled embeddings are computed once and a logistic-regression head is fitted
on them (L-BFGS, deterministic). With `finetune_encoder` the encoder is trained too (AdamW), on a copy.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluation.metrics import accuracy, mean_pool
from evaluation.models import EncoderUnderTest
from evaluation.results import Result, skipped
from mmbert.errors import UsageError
from mmbert.paths import DATA_DIR

TASK = "classification"
DEFAULT_DATA = DATA_DIR / "classification" / "udhr_topics.jsonl.gz"
REQUIRED_COLUMNS = ("text", "label", "language")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Example:
    text: str
    text_pair: str | None
    label: str
    language: str
    split: str


def read_classification_data(path: str | Path) -> list[Example]:
    """Examples of the train and test splits, language labels normalised; UsageError naming what is wrong."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise UsageError(f"classification data not found: {path}")
    if path.is_dir():
        frames = _read_datasets_directory(path)
    else:
        name = path.name.lower()
        readers = {".jsonl": lambda p: pd.read_json(p, lines=True), ".json": lambda p: pd.read_json(p, lines=True),
                   ".csv": pd.read_csv, ".parquet": pd.read_parquet}
        suffix = next((s for s in readers if name.endswith(s) or name.endswith(s + ".gz")), None)
        if suffix is None:
            raise UsageError(f"{path}: unsupported file type (use .jsonl, .csv, .parquet or a datasets directory)")
        try:
            frame = readers[suffix](path)
        except ValueError as error:
            raise UsageError(f"{path}: cannot read it as {suffix.lstrip('.')}: {error}") from None
        if "split" not in frame.columns:
            raise UsageError(f"{path}: no `split` column (train/test); add one or save a DatasetDict with both splits")
        frames = {split: frame[frame["split"] == split] for split in SPLITS}
    return _examples(frames, path)


def _read_datasets_directory(path: Path) -> dict:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise UsageError(f"{path}: not a `datasets` directory saved with save_to_disk ({error})") from None
    if isinstance(loaded, datasets.DatasetDict):
        missing = [s for s in SPLITS if s not in loaded]
        if missing:
            raise UsageError(f"{path}: DatasetDict without split(s) {', '.join(missing)}")
        return {split: loaded[split].to_pandas() for split in SPLITS}
    frame = loaded.to_pandas()
    if "split" not in frame.columns:
        raise UsageError(f"{path}: a single Dataset needs a `split` column (train/test)")
    return {split: frame[frame["split"] == split] for split in SPLITS}


def _examples(frames: dict, path: Path) -> list[Example]:
    from languages.registry import UnknownLanguage, normalize

    examples = []
    for split, frame in frames.items():
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise UsageError(f"{path}: missing column(s) {', '.join(missing)} (need text, label, language)")
        if frame.empty:
            raise UsageError(f"{path}: the {split} split is empty")
        pairs = frame["text_pair"] if "text_pair" in frame.columns else [None] * len(frame)
        for row, (text, pair, label, language) in enumerate(zip(frame["text"], pairs, frame["label"],
                                                                frame["language"])):
            if not isinstance(text, str) or _missing(label) or _missing(language):
                raise UsageError(f"{path}: {split} row {row} lacks a text, label or language")
            pair = pair if isinstance(pair, str) else None
            try:
                language = normalize(str(language))
            except UnknownLanguage as error:
                raise UsageError(f"{path}: {error}") from None
            examples.append(Example(text, pair, str(label), language, split))
    return examples


def _missing(value) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def encode_examples(model: EncoderUnderTest, examples: list[Example]) -> list[list[int]]:
    texts = model.token_ids([e.text for e in examples])
    pairs = iter(model.token_ids([e.text_pair for e in examples if e.text_pair is not None]))
    return [model.wrap(ids, None if example.text_pair is None else next(pairs))
            for ids, example in zip(texts, examples)]


def fit_linear_head(features: torch.Tensor, labels: torch.Tensor, classes: int, seed: int,
                    weight_decay: float = 1e-3) -> torch.nn.Module:
    """Multinomial logistic regression on standardised features (mean/std of the training rows), fitted by L-BFGS."""
    torch.manual_seed(seed)
    mean = features.mean(0)
    std = features.std(0).clamp(min=1e-6) if len(features) > 1 else torch.ones_like(mean)
    linear = torch.nn.Linear(features.shape[1], classes)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")
    inputs = (features - mean) / std

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(inputs), labels) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return _Standardised(linear, mean, std).eval()


class _Standardised(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.linear, self.mean, self.std = linear, mean, std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)


def finetune_encoder(model: EncoderUnderTest, sequences: list[list[int]], labels: torch.Tensor, classes: int,
                     seed: int, epochs: int, learning_rate: float) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Train a copy of the encoder and a linear head on mean-pooled states; returns (encoder, head)."""
    torch.manual_seed(seed)
    encoder = copy.deepcopy(model.encoder).float().train()  # float32 weights; bfloat16 only under autocast
    head = torch.nn.Linear(encoder.config.hidden_size, classes).to(model.device)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(sequences), generator=generator).tolist()
        for start in range(0, len(order), model.batch_size):
            batch = order[start: start + model.batch_size]
            input_ids, attention_mask = model.pad([sequences[i] for i in batch])
            with model.autocast():
                hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                logits = head(mean_pool(hidden, attention_mask))
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[batch].to(model.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return encoder.eval(), head.cpu().eval()


@torch.no_grad()
def _pooled(model: EncoderUnderTest, encoder: torch.nn.Module, sequences: list[list[int]]) -> torch.Tensor:
    original, model.encoder = model.encoder, encoder
    try:
        return model.hidden_states(sequences)
    finally:
        model.encoder = original


def evaluate_classification(model: EncoderUnderTest, examples: list[Example], languages: list[str] | None,
                            seed: int, transfer_from: str = "eng_Latn", train_encoder: bool = False,
                            epochs: int = 3, learning_rate: float = 2e-5) -> list[Result]:
    train = [e for e in examples if e.split == "train"]
    test = [e for e in examples if e.split == "test"]
    if not train or not test:
        missing = "training" if not train else "test"
        return [skipped(model.name, TASK, language, "accuracy", f"no {missing} examples in the chosen languages")
                for language in languages or sorted({e.language for e in examples})]
    classes = sorted({e.label for e in train})
    index = {label: i for i, label in enumerate(classes)}
    # A test label never seen in training cannot be predicted: it counts as an error (-1 matches no class).
    train_labels = torch.tensor([index[e.label] for e in train])
    test_labels = torch.tensor([index.get(e.label, -1) for e in test])
    train_sequences, test_sequences = encode_examples(model, train), encode_examples(model, test)
    train_languages = Counter(e.language for e in train)

    settings = {"accuracy": list(range(len(train)))}
    if len(train_languages) > 1 and transfer_from in train_languages:
        settings["zero_shot_accuracy"] = [i for i, e in enumerate(train) if e.language == transfer_from]

    if not train_encoder:
        with torch.no_grad():
            train_features = model.hidden_states(train_sequences)
            test_features = model.hidden_states(test_sequences)
    predictions = {}
    for metric, rows in settings.items():
        if len(set(train_labels[rows].tolist())) < 2:
            predictions[metric] = None  # one class only: nothing to learn
            continue
        if train_encoder:
            encoder, head = finetune_encoder(model, [train_sequences[i] for i in rows], train_labels[rows],
                                             len(classes), seed, epochs, learning_rate)
            features = _pooled(model, encoder, test_sequences)
        else:
            head = fit_linear_head(train_features[rows], train_labels[rows], len(classes), seed)
            features = test_features
        with torch.no_grad():
            predictions[metric] = head(features).argmax(dim=-1)
    # What a model that learnt nothing scores: always the most frequent training label (the smallest on a tie). The
    # label shares of train and test differ (UDHR topics: 28 % vs 35 % for the largest), so chance is not 1/classes.
    majority = Counter(train_labels.tolist()).most_common()
    majority_label = min(label for label, count in majority if count == majority[0][1])
    predictions["majority_baseline"] = torch.full((len(test),), majority_label)

    test_languages = sorted({e.language for e in test})
    results = []
    for language in languages if languages is not None else test_languages:
        rows = [i for i, e in enumerate(test) if e.language == language]
        for metric, predicted in predictions.items():
            if not rows:
                results.append(skipped(model.name, TASK, language, metric, "no test examples in this language"))
            elif predicted is None:
                results.append(skipped(model.name, TASK, language, metric, "training data has a single label"))
            else:
                value = accuracy(predicted[rows], test_labels[rows])
                results.append(Result(model.name, TASK, language, metric, value, len(rows)))
    return results


def texts_by_language(examples: list[Example]) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {}
    for example in examples:
        texts.setdefault(example.language, []).append(example.text)
        if example.text_pair:
            texts[example.language].append(example.text_pair)
    return texts
