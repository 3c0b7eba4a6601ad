"""Beam runner flags shared by every Beam job's command (`corpus build`, `corpus crawl`, `tokenizer pack`, …)."""

from __future__ import annotations

import logging
import shlex

from mmbert.errors import UsageError


def add_runner_arguments(parser) -> None:
    """--runner and --pipeline-options: the same job on the DirectRunner, Dataflow, Flink or Spark."""
    group = parser.add_argument_group("runner")
    group.add_argument("--runner", default="DirectRunner", help="Beam runner (default: DirectRunner, on this machine)")
    group.add_argument("--pipeline-options", default="", metavar="'OPTS'",
                       help="more Beam pipeline options in one quoted string, e.g. "
                            "\"--project P --region R --temp_location gs://B/tmp\" (a single flag: "
                            "--pipeline-options=--flag=value)")


def runner_arguments(args) -> list[str]:
    """The Beam flags that `add_runner_arguments` collected, as a list for PipelineOptions."""
    try:
        pipeline_args = shlex.split(args.pipeline_options)
    except ValueError as error:  # an unclosed quote
        raise UsageError(f"--pipeline-options: {error}: {args.pipeline_options!r}") from None
    if args.runner != "DirectRunner":
        pipeline_args = ["--runner", args.runner] + pipeline_args
    return pipeline_args


def pipeline_options(pipeline_args, num_workers: int, running_mode: str | None = None):
    """Beam options: the local DirectRunner with `num_workers` by default; flags in `pipeline_args` come later and win.

    `running_mode` defaults to in-memory for one worker and processes for more (the jobs are CPU-bound). Local
    worker processes log errors only: at their default (INFO) each job printed ~40 lines of harness chatter.
    """
    quiet_beam_import_warning()
    from apache_beam.options.pipeline_options import PipelineOptions

    if running_mode is None:
        running_mode = "multi_processing" if num_workers > 1 else "in_memory"
    local = _runner(pipeline_args or []) in (None, "DirectRunner")
    return PipelineOptions(["--runner=DirectRunner", f"--direct_num_workers={num_workers}",
                            f"--direct_running_mode={running_mode}",
                            *(["--default_sdk_harness_log_level=ERROR"] if local else []), *(pipeline_args or [])])


def _runner(pipeline_args: list[str]) -> str | None:
    """The runner the flags name (the last --runner, in either spelling), as Beam itself parses it; None if none."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    return PipelineOptions(pipeline_args).view_as(StandardOptions).runner


class _DropApitoolsWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def quiet_beam_import_warning() -> None:
    """Beam warns at import that Google Cloud's apitools are missing, which only matters for BigQuery/Dataflow
    (`pip install apache-beam[gcp]` brings them); drop that one line in this process (local worker processes still
    print it once each). Call before importing apache_beam."""
    root = logging.getLogger()
    if not any(isinstance(f, _DropApitoolsWarning) for f in root.filters):
        root.addFilter(_DropApitoolsWarning())


def new_pipeline(pipeline_args, num_workers: int, running_mode: str | None = None):
    """A Beam pipeline for those options; an unknown runner or a malformed option is a UsageError before anything
    runs. (An option no installed Beam module defines is only logged by Beam: a runner's plugin may define it.)"""
    import apache_beam as beam

    try:
        return beam.Pipeline(options=pipeline_options(pipeline_args, num_workers, running_mode))
    except ValueError as error:
        raise UsageError(f"--runner/--pipeline-options: {error}") from None
