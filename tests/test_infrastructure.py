"""The shared infrastructure every stage relies on: atomic outputs, YAML loading, Beam runner flags."""

from __future__ import annotations

import argparse

import pytest

from mmbert.atomic import atomic_directory, atomic_file, write_text_atomic
from mmbert.beam import add_runner_arguments, runner_arguments
from mmbert.errors import UsageError, read_yaml_mapping


def test_atomic_file_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_file(target, "w") as handle:
            handle.write("half of the second")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "first"  # the old file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # and no temporary file is left behind


def test_atomic_directory_replaces_only_when_finished(tmp_path):
    target = tmp_path / "shards"
    with atomic_directory(target) as staging:
        (staging / "part-0").write_text("a")
    assert (target / "part-0").read_text() == "a"
    with pytest.raises(UsageError, match="appeared while"):  # another run's output, made meanwhile, is kept
        with atomic_directory(target) as staging:
            (staging / "part-0").write_text("b")
    with pytest.raises(RuntimeError):
        with atomic_directory(target, overwrite=True) as staging:
            (staging / "part-0").write_text("c")
            raise RuntimeError("crash")
    assert (target / "part-0").read_text() == "a"
    with atomic_directory(target, overwrite=True) as staging:
        (staging / "part-1").write_text("d")
    assert sorted(p.name for p in target.iterdir()) == ["part-1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]


def test_an_output_path_no_directory_can_take_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot write"):
        with atomic_directory(tmp_path / ("x" * 300)):
            pass
    assert list(tmp_path.iterdir()) == []


def test_atomic_outputs_get_the_permissions_of_plain_ones(tmp_path):
    # The temporary file and directory are created owner-only; what is renamed into place must not stay so, or an
    # exported model or a shard directory would be unreadable to anyone else.
    import os
    import stat

    plain_file, plain_dir = tmp_path / "plain.txt", tmp_path / "plain"
    plain_file.write_text("x")
    plain_dir.mkdir()
    write_text_atomic(tmp_path / "atomic.txt", "x")
    with atomic_directory(tmp_path / "atomic") as staging:
        (staging / "inside").write_text("x")

    def mode(path):
        return stat.S_IMODE(os.stat(path).st_mode)

    assert mode(tmp_path / "atomic.txt") == mode(plain_file)
    assert mode(tmp_path / "atomic") == mode(plain_dir)


@pytest.mark.parametrize("text, message", [("a: [", "not valid YAML"), ("- a\n- b\n", "mapping at the top level")])
def test_read_yaml_mapping_names_the_problem(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as error:
        read_yaml_mapping(path)
    assert "\n" not in str(error.value)  # one line on the terminal
    with pytest.raises(UsageError, match="recipe not found"):
        read_yaml_mapping(tmp_path / "missing.yaml")
    path.write_text("a: 1\n")
    assert read_yaml_mapping(path) == {"a": 1}


def parse_runner(*argv):
    parser = argparse.ArgumentParser()
    add_runner_arguments(parser)
    return runner_arguments(parser.parse_args(list(argv)))


def test_runner_flags_pass_through_to_beam():
    assert parse_runner() == []
    assert parse_runner("--runner", "DataflowRunner", "--pipeline-options", "--project p --region 'europe west'") == [
        "--runner", "DataflowRunner", "--project", "p", "--region", "europe west"]
    with pytest.raises(UsageError, match="No closing quotation"):
        parse_runner("--pipeline-options", "--project 'p")


def test_local_beam_workers_log_errors_only_unless_asked():
    from mmbert.beam import pipeline_options

    local = pipeline_options([], 2).get_all_options()
    assert local["default_sdk_harness_log_level"] == "ERROR" and local["direct_num_workers"] == 2
    assert pipeline_options(["--default_sdk_harness_log_level=INFO"], 2).get_all_options()[
        "default_sdk_harness_log_level"] == "INFO"
    # On a remote runner the workers' own logs are the user's business: left at the runner's default.
    remote = pipeline_options(["--runner", "PortableRunner"], 2).get_all_options()
    assert remote["default_sdk_harness_log_level"] is None
    assert pipeline_options(["--runner=DirectRunner"], 2).get_all_options()["default_sdk_harness_log_level"] == "ERROR"


def test_mmbert_run_resumes_only_the_same_interrupted_training(tmp_path):
    """`mmbert run`'s train stage passes --resume auto; what the run directory holds decides what that means."""
    from mmbert.run import prepare_run_directory

    run, started = tmp_path / "run", tmp_path / ".stages" / "train.started.json"
    command = ["train", "--config", "r.yaml", "--output", str(run), "--resume", "auto"]

    def checkpoint(label: str):
        (run / "checkpoints" / "step-00000010").mkdir(parents=True, exist_ok=True)
        (run / "checkpoints" / "latest").write_text(label)

    checkpoint("from before the records")  # a run directory older than train.started.json: resumed as it was
    assert prepare_run_directory(run, started, command, "abc", forced=False, upstream_ran=False) == ""
    assert (run / "checkpoints" / "latest").read_text() == "from before the records"
    checkpoint("interrupted")  # killed mid-training; the same command comes back: resume
    assert prepare_run_directory(run, started, command, "abc", forced=False, upstream_ran=False) == ""
    assert (run / "checkpoints" / "latest").read_text() == "interrupted"
    # The recipe changed (another fingerprint): start over, the old run kept aside.
    note = prepare_run_directory(run, started, command, "edited", forced=False, upstream_ran=False)
    assert "previous run is kept in" in note and not run.exists()
    (aside,) = tmp_path.glob("run.replaced-*")
    assert (aside / "checkpoints" / "latest").read_text() == "interrupted"
    # --force: the old run is removed. New shards from an earlier stage: kept aside too (days of GPU time; shards
    # repacked with other workers are the same), and the note says why.
    checkpoint("stale")
    note = prepare_run_directory(run, started, command, "edited", forced=True, upstream_ran=False)
    assert note.startswith("starting over: removed") and not run.exists()
    assert len(list(tmp_path.glob("run.replaced-*"))) == 1
    checkpoint("new data")  # (within the same second: a name of its own beside the first)
    note = prepare_run_directory(run, started, command, "edited", forced=False, upstream_ran=True)
    assert note.startswith("its data was rebuilt") and "kept in" in note and not run.exists()
    assert len(list(tmp_path.glob("run.replaced-*"))) == 2
    # A start that failed before its first checkpoint leaves nothing worth keeping: removed, nothing moved aside.
    (run / "metrics.jsonl").parent.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("")
    assert prepare_run_directory(run, started, command, "typo", forced=False, upstream_ran=False) == ""
    assert not run.exists() and len(list(tmp_path.glob("run.replaced-*"))) == 2


def test_a_reader_that_leaves_early_is_no_error():
    # `mmbert languages list | head -1`: the pipe closes under a long listing; no traceback, the shell's 141.
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "mmbert", "languages", "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(b"code")
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 141 and b"Traceback" not in stderr, stderr[-2000:]


def test_an_output_path_that_cannot_be_one_is_a_usage_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UsageError, match="is a directory; name a file"):
        write_text_atomic(tmp_path, "x")
    with pytest.raises(UsageError, match="a file stands where a directory"):
        write_text_atomic(tmp_path / "a-file" / "out.csv", "x")
    with pytest.raises(UsageError, match="is a file; name a directory"):
        with atomic_directory(tmp_path / "a-file"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_the_output_check_uses_only_a_real_empty_directory_and_never_an_input(tmp_path):
    from mmbert.atomic import check_output_directory

    (tmp_path / "empty").mkdir()
    assert check_output_directory(tmp_path / "empty", overwrite=False) == tmp_path / "empty"
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for link in ("link", "dangling"):  # replacing a link drops it: the output would not be where it points
        for overwrite in (False, True):
            with pytest.raises(UsageError, match="is a symbolic link"):
                check_output_directory(tmp_path / link, overwrite=overwrite)
    from mmbert.atomic import atomic_directory

    with atomic_directory(tmp_path / "dangling", overwrite=True) as staging:  # a link that appears is replaced
        (staging / "done").touch()
    assert (tmp_path / "dangling" / "done").is_file() and not list(tmp_path.glob(".dangling.old-*"))
    corpus = tmp_path / "work" / "corpus"
    corpus.mkdir(parents=True)
    for output, message in ((tmp_path / "work", "must not be or hold the --corpus"),
                            (corpus / "out", "must not be inside --corpus")):
        with pytest.raises(UsageError, match=message):
            check_output_directory(output, overwrite=True, scans=[("--corpus", corpus)])
    check_output_directory(tmp_path / "work" / "shards", overwrite=False, reads=[("--corpus", corpus)])  # a sibling
