"""The `mmbert` command line: one sub-command group per stage.

Each module listed in STAGE_CLIS (a stage's `cli.py`, `mmbert.run`, …) has `register(subparsers)`, which adds its
commands and sets `func` on each parser. Heavy libraries (Beam, torch, transformers) are imported inside the
handlers, so `mmbert --help` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from mmbert import __version__
from mmbert.argtypes import HelpFormatter
from mmbert.beam import quiet_beam_import_warning
from mmbert.errors import UsageError

# Order here is the order in `mmbert --help`.
STAGE_CLIS = ("languages.cli", "corpus.cli", "tokenizer.cli", "training.cli", "evaluation.cli", "mmbert.run")

EPILOG = """\
examples:
  mmbert languages list --phase pretrain
  mmbert corpus build --input data/warc/*.warc.gz --output out/corpus
  mmbert tokenizer pack --corpus out/corpus --tokenizer gemma2 --seq-len 1024 --output out/shards
  mmbert train --config recipes/tiny-cpu.yaml
  mmbert eval --model out/export --tasks mlm,retrieval --shards out/shards --output out/eval
  mmbert run recipes/demo.yaml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmbert",
        description="Train massively multilingual encoders end to end: corpus, tokenizer, training, evaluation.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mmbert {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in STAGE_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:  # a real import error inside the module must surface
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `train … --output DIR optimizer.lr=1e-3`: overrides after an option are overrides too (argparse stops
    # collecting a positional list at the first option).
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in item and not item.startswith("-") for item in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        # No command, or a group without its sub-command (`mmbert languages`): that level's help, and the exit
        # status of any unusable arguments (a script's `mmbert corpus && …` must not read it as done).
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2
    quiet_beam_import_warning()  # before any handler imports Beam
    try:
        return int(args.func(args) or 0)
    except UsageError as error:
        print(f"mmbert {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as interrupt:
        return _interrupted(interrupt)
    except BrokenPipeError:  # `mmbert languages list | head`: the reader left; nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's final flush fails too
        return 141
    except Exception as error:  # Beam's runner re-raises an interrupt inside a stage as a RuntimeError
        interrupt = _interrupt_behind(error)
        if interrupt is None:
            raise
        return _interrupted(interrupt)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that half-written outputs are removed as on Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _interrupted(interrupt: KeyboardInterrupt) -> int:
    terminated = isinstance(interrupt, Terminated)
    print("terminated" if terminated else "interrupted", file=sys.stderr)
    return 143 if terminated else 130


def program() -> None:
    """The `mmbert` program (console script and `python -m mmbert`); `main` is what tests call in-process."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    code = main()
    distributed = sys.modules.get("training.distributed")  # imported only by commands that train
    if distributed is not None:
        distributed.exit_process(code)  # returns unless a gloo group was made
    raise SystemExit(code)
