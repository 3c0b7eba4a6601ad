"""`mmbert eval …`: score an encoder per language (`mmbert eval --model …`) and set result sets side by side
(`mmbert eval compare …`). The work lives in evaluation/*.py; this file checks arguments and wires the steps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mmbert.argtypes import HelpFormatter, non_negative_int, positive_float, positive_int
from mmbert.errors import UsageError

TASKS = ("mlm", "retrieval", "classification", "fertility")

EPILOG = """\
examples:
  mmbert eval --model out/run --shards out/shards --output out/eval          # all tasks, built-in UDHR data
  mmbert eval --model ~/models/xlm-roberta-base --tasks retrieval,fertility --output out/eval-xlmr
  mmbert eval --model out/export --tasks classification --classification-data xnli.jsonl \\
      --languages eng_Latn fra_Latn swh_Latn --output out/eval-xnli
  mmbert eval compare out/eval out/eval-xlmr --output out/compare

--model is a training checkpoint (checkpoint.json + model.safetensors), a run directory (its latest checkpoint) or
any Hugging Face encoder directory, loaded offline. Built-in data: data/retrieval/udhr (UDHR articles paired with
English) and data/classification/udhr_topics.jsonl.gz (UDHR paragraphs labelled by part of the declaration).
Output: results.csv/json (model, task, language, metric, value, n, status), report.md and PNG plots.
"""

COMPARE_EPILOG = """\
example:
  mmbert eval compare out/eval-mmbert-small out/eval-xlmr --output out/compare
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="per-language benchmarks of an encoder, reports and comparisons",
        usage="mmbert eval --model PATH [--tasks …] [--languages …] [data and settings] --output DIR\n"
              "       mmbert eval compare RESULTS_DIR RESULTS_DIR… --output DIR",
        description="Score an encoder per language on masked-token prediction (held-out shards), bitext retrieval, "
                    "classification and tokenizer fertility; write tables and plots. "
                    "`mmbert eval compare` sets several result directories side by side.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    parser.set_defaults(func=eval_command, group_parser=parser)
    parser.add_argument("--model", help="checkpoint, run or Hugging Face model directory")
    parser.add_argument("--tasks", default=None,
                        help=f"comma-separated, from {','.join(TASKS)} (default: all; mlm only with --shards)")
    parser.add_argument("--languages", nargs="+", help="only these languages (any label style; commas or spaces)")
    parser.add_argument("--output", help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--name", help="model name in the results (default: the directory name)")
    data = parser.add_argument_group("data")
    data.add_argument("--shards", help="packed shards directory (`mmbert tokenizer pack`); MLM uses <lang>/heldout")
    data.add_argument("--retrieval-data", help="directory of TSV files src_lang<TAB>tgt_lang<TAB>src<TAB>tgt "
                                               "(default: data/retrieval/udhr)")
    data.add_argument("--classification-data", help="jsonl/csv/parquet file or datasets directory with text "
                                                    "[text_pair] label language [split] "
                                                    "(default: data/classification/udhr_topics.jsonl.gz)")
    data.add_argument("--tokenizer", help="tokenizer spec (gemma2, a tokenizer.json, …) to use instead of the "
                      "model's own (required when the model directory has none)")
    data.add_argument("--schedule", help="phases YAML for grouping languages by phase (default: mmBERT's)")
    knobs = parser.add_argument_group("settings")
    knobs.add_argument("--seed", type=non_negative_int, default=0,
                       help="masked positions and classifier initialisation")
    knobs.add_argument("--batch-size", type=positive_int, default=32)
    knobs.add_argument("--device", help="cpu, cuda, cuda:1, … (default: the first GPU if any, else the CPU)")
    knobs.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                       help="bfloat16: weights in bfloat16 for scoring (fine-tuning: autocast), faster on GPUs")
    knobs.add_argument("--max-length", type=int, default=512, help="longest input in tokens")
    knobs.add_argument("--mlm-positions", type=positive_int, default=1000, help="masked positions scored per language")
    knobs.add_argument("--retrieval-layer", type=int, default=-1,
                       help="hidden state to mean-pool: 0 the embeddings … L the last layer (-1: last)")
    knobs.add_argument("--transfer-from", default="eng_Latn", help="source language of zero-shot transfer")
    knobs.add_argument("--finetune-encoder", action="store_true", help="train the encoder too, not just the head")
    knobs.add_argument("--epochs", type=positive_int, default=3, help="epochs of encoder fine-tuning")
    knobs.add_argument("--learning-rate", type=positive_float, default=2e-5,
                       help="learning rate of encoder fine-tuning")

    commands = parser.add_subparsers(dest="eval_command", metavar="COMMAND")
    compare = commands.add_parser(
        "compare", prog="mmbert eval compare",
        help="set two or more result directories side by side (table + plots)",
        description="Read the results.csv of each directory and write compare.csv, compare.md and one plot per "
                    "headline metric (grouped bars per language). Settings (results.json) that differ between the "
                    "runs, and scores over a different n, are listed in compare.md.",
        epilog=COMPARE_EPILOG, formatter_class=HelpFormatter)
    compare.add_argument("results", nargs="+", metavar="RESULTS_DIR")
    compare.add_argument("--output", required=True, help="output directory")
    compare.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    compare.set_defaults(func=compare_command)


def _check_output(path: str | None, overwrite: bool, reads) -> Path:
    from mmbert.atomic import check_output_directory

    if not path:
        raise UsageError("--output is required")
    return check_output_directory(path, overwrite, reads=reads)


def _tasks(args) -> list[str]:
    if args.tasks is None:
        return [t for t in TASKS if t != "mlm" or args.shards]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise UsageError(f"unknown task(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(TASKS)}")
    if "mlm" in tasks and not args.shards:
        raise UsageError("--tasks mlm needs --shards (the packed shards with <language>/heldout splits)")
    return list(dict.fromkeys(tasks))


def eval_command(args) -> int:
    if args.model is None and args.output is None:  # bare `mmbert eval`: show what it can do
        args.group_parser.print_help()
        return 2
    if args.model is None:
        raise UsageError("--model is required (or run `mmbert eval compare RESULTS_DIR… --output DIR`)")
    from evaluation import classification, mlm, retrieval
    from evaluation.models import pick_device, resolve_model_path
    from evaluation.report import phase_of_languages, shard_token_counts, training_data_amounts
    from languages.registry import normalize_list

    tasks = _tasks(args)
    output = _check_output(args.output, args.overwrite, [
        ("--model", args.model), ("--shards", args.shards), ("--retrieval-data", args.retrieval_data),
        ("--classification-data", args.classification_data),
        ("--tokenizer", args.tokenizer if args.tokenizer and Path(args.tokenizer).exists() else None)])  # or a name
    languages = normalize_list(args.languages)
    resolve_model_path(args.model)
    pick_device(args.device)
    if args.max_length < 3:  # [CLS] and [SEP] around at least one token of text
        raise UsageError(f"--max-length must be at least 3, got {args.max_length}")
    transfer_from = normalize_list(args.transfer_from, "--transfer-from")[0]
    # Read and check every input before loading the model, so bad data fails in a second, not after a model load.
    manifest = mlm.open_shards(args.shards).manifest if "mlm" in tasks else {}
    bitext = examples = None
    if "retrieval" in tasks or "fertility" in tasks:
        bitext = retrieval.read_bitext(args.retrieval_data or retrieval.DEFAULT_DATA)
    if "classification" in tasks or ("fertility" in tasks and args.classification_data):
        examples = classification.read_classification_data(args.classification_data or classification.DEFAULT_DATA)
        if languages:  # train and test on the chosen languages (and the transfer source) only
            examples = [e for e in examples if e.language in {*languages, transfer_from}]
    plot_inputs = (phase_of_languages(args.schedule, shard_token_counts(args.shards)),
                   training_data_amounts(args.shards))

    # Everything that can change a score, so `eval compare` can tell runs made differently apart.
    settings = {"model path": str(args.model), "tasks": ",".join(tasks), "seed": args.seed,
                "precision": args.precision, "max length": args.max_length,
                "languages": ",".join(languages) if languages else "all with data"}
    if "mlm" in tasks:
        settings.update({"shards": str(args.shards), "masked positions per language": args.mlm_positions})
        tails = [label for label in mlm.document_tail_languages(manifest) if not languages or label in languages]
        if tails:  # a one-document language: its held-out text continues text the model trained on
            settings["held-out text is the tail of a training document"] = (
                f"{len(tails)} languages ({', '.join(tails[:8])}{', …' if len(tails) > 8 else ''}); their MLM scores "
                "are not on unseen documents")
    if bitext is not None:
        settings["retrieval data"] = str(args.retrieval_data or retrieval.DEFAULT_DATA)
    if examples is not None:
        settings["classification data"] = str(args.classification_data or classification.DEFAULT_DATA)
        settings["classifier"] = ("encoder fine-tuned" if args.finetune_encoder else "linear head on frozen encoder")
        settings["zero-shot transfer from"] = transfer_from
        if args.finetune_encoder:  # the frozen-encoder head has no such knobs
            settings.update({"fine-tuning epochs": args.epochs, "fine-tuning learning rate": args.learning_rate,
                             "fine-tuning batch size": args.batch_size})
    results = run_tasks(args, tasks, languages, bitext, examples, transfer_from, settings)
    write_outputs(results, output, args, settings, plot_inputs)
    scored = sum(r.ok for r in results)
    print(f"{scored} results, {len(results) - scored} skipped → {output}/results.csv, report.md")
    return 0


def run_tasks(args, tasks, languages, bitext, examples, transfer_from, settings) -> list:
    from evaluation import classification, fertility, mlm, retrieval
    from evaluation.models import open_model

    results = []
    with open_model(args.model, tokenizer=args.tokenizer, name=args.name, max_length=args.max_length,
                    batch_size=args.batch_size, device=args.device, precision=args.precision) as model:
        settings["model"] = model.name
        if model.max_length < args.max_length:  # capped by the model's positions or its tokenizer
            settings["max length"] = f"{model.max_length} (the model's limit; {args.max_length} asked)"
        if "retrieval" in tasks:
            model.check_layer(args.retrieval_layer)  # before any task runs: a typo costs seconds, not the MLM task
            layers = model.encoder.config.num_hidden_layers
            index = args.retrieval_layer % (layers + 1)  # -1 and L are both the last: recorded alike
            settings["retrieval layer"] = "last" if index == layers else index
        if "mlm" in tasks:
            results += mlm.evaluate_mlm(model, args.shards, languages, args.mlm_positions, args.seed)
        if "retrieval" in tasks:
            results += retrieval.evaluate_retrieval(model, bitext, languages, args.retrieval_layer)
        if "classification" in tasks:
            results += classification.evaluate_classification(
                model, examples, languages, args.seed, transfer_from, args.finetune_encoder, args.epochs,
                args.learning_rate)
        if "fertility" in tasks:
            # The bitext's sentences; classification text only for languages the bitext lacks (the built-in sets
            # share their UDHR text, which would otherwise be counted twice).
            texts = retrieval.texts_by_language(bitext)
            for language, more in (classification.texts_by_language(examples) if examples else {}).items():
                texts.setdefault(language, more)
            results += fertility.evaluate_fertility(model, texts, languages)
    return results


def write_outputs(results, output: Path, args, settings: dict, plot_inputs: tuple) -> None:
    from evaluation.report import write_plots, write_report
    from evaluation.results import write_results
    from mmbert.atomic import atomic_directory

    with atomic_directory(output, overwrite=args.overwrite) as directory:
        write_results(results, directory, settings)
        plots = write_plots(results, directory, settings["model"], *plot_inputs)
        write_report(results, directory, settings["model"], settings, plots)


def _run_labels(models: list[str], directories: list[str]) -> list[str]:
    """One column name per result set: the model's name, with its directory's name where two models share a name
    (two `mmbert run` outputs both evaluate `model` into `eval`), or the path as given where those match too."""
    labels = list(models)
    for describe in (lambda d: Path(d).name, str):
        repeated = {label for label in labels if labels.count(label) > 1}
        labels = [f"{model} ({describe(d)})" if label in repeated else label
                  for model, label, d in zip(models, labels, directories)]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UsageError(f"the same result directory is given twice: {', '.join(repeated)}")
    return labels


def compare_command(args) -> int:
    import sys

    from evaluation.report import differing_settings, write_comparison
    from evaluation.results import read_results, read_settings
    from mmbert.atomic import atomic_directory

    if len(args.results) < 2:
        raise UsageError("compare needs two or more result directories")
    output = _check_output(args.output, args.overwrite, [("results directory", d) for d in args.results])
    runs = []
    for directory in args.results:
        rows = read_results(directory)
        if not rows:
            raise UsageError(f"{directory}/results.csv has no rows")
        runs.append(rows)
    settings = [read_settings(directory) for directory in args.results]
    labels = _run_labels([run[0].model for run in runs], args.results)
    runs = [[replace(r, model=label) for r in run] for run, label in zip(runs, labels)]
    with atomic_directory(output, overwrite=args.overwrite) as directory:
        write_comparison(runs, directory, settings)
    if differing := differing_settings(settings):
        print(f"warning: the result sets were made with different settings ({', '.join(differing)}); "
              f"see {output}/compare.md", file=sys.stderr)
    print(f"compared {len(runs)} result sets → {output}/compare.md, compare.csv")
    return 0
