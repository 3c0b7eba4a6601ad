"""Beam runner flags shared by every Beam job's command (`corpus build`, `corpus crawl`, `tokenizer pack`, …)."""

from __future__ import annotations

import shlex


def add_runner_arguments(parser) -> None:
    """--runner and --pipeline-options: the same job on the DirectRunner, Dataflow, Flink or Spark."""
    group = parser.add_argument_group("runner")
    group.add_argument("--runner", default="DirectRunner", help="Beam runner (default: DirectRunner, local processes)")
    group.add_argument("--pipeline-options", default="", metavar="'OPTS'",
                       help="more Beam pipeline options, e.g. \"--project P --region R --temp_location gs://B/tmp\"")


def runner_arguments(args) -> list[str]:
    """The Beam flags that `add_runner_arguments` collected, as a list for PipelineOptions."""
    beam_args = shlex.split(args.pipeline_options)
    if args.runner != "DirectRunner":
        beam_args = ["--runner", args.runner] + beam_args
    return beam_args
