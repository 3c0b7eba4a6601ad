"""`mmbert train` end to end on real UDHR shards: the tiny recipe's three phases, the loss falls, a killed run
resumes to the same losses bit for bit, unusable runs fail with exit status 2, and training imports nothing of the
corpus stack (the GPU machines do not have it)."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.training.run_helpers import REPO_ROOT, TINY_RECIPE, environment, mmbert_command, read_metrics, run_mmbert

ARGS = ("--no-progress", "training.checkpoint_every=5")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, shards_64):
    run = tmp_path_factory.mktemp("reference") / "run"
    done = run_mmbert("train", "--config", str(TINY_RECIPE), "--output", str(run), *ARGS,
                      f"data.shards={shards_64}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def test_three_phases_switch_languages_mask_rate_and_rope(reference_run):
    metrics = read_metrics(reference_run)
    assert [m["step"] for m in metrics] == list(range(1, 41))  # 10K + 6K + 4K tokens at 8 rows × 64 tokens
    phases = [m["phase"] for m in metrics]
    assert phases == ["pretrain"] * 20 + ["mid_training"] * 12 + ["decay"] * 8
    assert {m["mask_rate"] for m in metrics if m["phase"] == "decay"} == {0.05}
    assert metrics[0]["rope_theta"] == [10_000, 10_000] and metrics[-1]["rope_theta"] == [160_000, 160_000]
    seen = metrics[-1]["tokens_per_language"]
    assert sum(seen.values()) == metrics[-1]["tokens_seen"] == 40 * 8 * 64
    first_phase_languages = set(metrics[19]["tokens_per_language"])
    assert len(first_phase_languages) <= 8 < len(seen)  # later phases bring in new languages
    assert metrics[-1]["lr"] < 0.1 * metrics[20]["lr"]  # the decay phase decays the learning rate
    # ... from its first step, at the peak: the phases before it ran 10,240 and 6,144 tokens for budgets of 10K and
    # 6K, and that overshoot does not move the decay's start
    assert metrics[31]["lr"] == metrics[32]["lr"] == 2e-2 > metrics[33]["lr"]


def test_loss_falls_on_real_text(reference_run, shards_64):
    metrics = read_metrics(reference_run)
    losses = [m["loss"] for m in metrics]
    assert abs(losses[0] - math.log(256_000)) < 0.3  # an untrained model is uniform over the vocabulary
    assert sum(losses[15:20]) / 5 < losses[0] - 3  # end of pre-training
    # Held-out rows of the pre-training languages, masked the same way, before and after training.
    from training.batches import document_ids_from_lengths
    from training.checkpoint import load_checkpoint
    from training.data import LoaderShards, RowGroupCache
    from training.masking import mask_batch
    from training.model import MaskedLM, ModelConfig

    weights, meta, _ = load_checkpoint(reference_run / "checkpoints" / "step-00000040")
    config = ModelConfig.from_dict(meta["model_config"])
    shards, cache = LoaderShards.open(shards_64), RowGroupCache()
    rows = []
    for language in sorted(metrics[19]["tokens_per_language"]):
        table = shards.table(language)
        rows += [cache.row(table, i) for i in range(min(4, table.num_rows))]
    ids = torch.from_numpy(np.stack([r[0] for r in rows]))
    inputs, labels = mask_batch(ids, 0.15, [(1, i) for i in range(len(rows))], config.vocab_size)
    documents = document_ids_from_lengths([r[1] for r in rows], ids.shape[1])

    def held_out_loss(model):
        with torch.no_grad():
            return model.eval()(inputs, documents, labels).loss.item()

    torch.manual_seed(0)
    untrained = MaskedLM(config)
    trained = MaskedLM(config)
    trained.load_state_dict(weights)
    assert held_out_loss(trained) < held_out_loss(untrained) - 2


def test_resume_after_a_kill_gives_the_same_losses_bit_for_bit(reference_run, shards_64, tmp_path, capsys):
    # With dropout, so the resumed run must also continue the random stream the killed one was drawing from.
    args = (*ARGS, f"data.shards={shards_64}", "model.attention_out_dropout=0.1")
    uninterrupted = tmp_path / "reference"
    done = run_mmbert("train", "--config", str(TINY_RECIPE), "--output", str(uninterrupted), *args)
    assert done.returncode == 0, done.stderr[-3000:]
    without_dropout = [m["loss"] for m in read_metrics(reference_run)]
    assert [m["loss"] for m in read_metrics(uninterrupted)] != without_dropout  # dropout is on
    run = tmp_path / "run"
    command = mmbert_command("train", "--config", str(TINY_RECIPE), "--output", str(run), *args)

    process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and process.poll() is None:
            if (run / "metrics.jsonl").is_file() and len(read_metrics(run)) >= 17:
                break
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)  # no clean-up of any kind: as if the machine went away
        process.wait()
    killed_at = len(read_metrics(run))
    assert 17 <= killed_at < 40, "the run must be killed in the middle"

    # Without --resume, the run directory is refused rather than silently overwritten.
    from mmbert.cli import main

    assert main(["train", "--config", str(TINY_RECIPE), "--output", str(run), *args]) == 2
    assert "already has checkpoints: pass --resume auto" in capsys.readouterr().err

    resumed = run_mmbert("train", "--config", str(TINY_RECIPE), "--output", str(run), "--resume", "auto", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "step-000000" in resumed.stderr
    expected = [(m["step"], m["loss"], m["lr"]) for m in read_metrics(uninterrupted)]
    assert [(m["step"], m["loss"], m["lr"]) for m in read_metrics(run)] == expected  # exact float equality
    final = load_file(run / "checkpoints" / "step-00000040" / "model.safetensors")
    reference = load_file(uninterrupted / "checkpoints" / "step-00000040" / "model.safetensors")
    assert all(torch.equal(final[name], reference[name]) for name in reference)
    # Resuming the finished run trains nothing, and says so.
    again = run_mmbert("train", "--config", str(TINY_RECIPE), "--output", str(run), "--resume", "auto", *args)
    assert again.returncode == 0 and "every phase had already finished at step 40: nothing to train" in again.stderr
    assert len(read_metrics(run)) == len(expected)


def test_a_diverged_run_stops_at_the_first_non_finite_loss_without_saving_it(shards_64, tmp_path, capsys):
    from mmbert.cli import main

    def train(run, *overrides):
        return main(["train", "--config", str(TINY_RECIPE), "--output", str(run), "--no-progress",
                     f"data.shards={shards_64}", "optimizer.lr=1e38", "training.checkpoint_every=1", *overrides])

    assert train(tmp_path / "logged") == 1
    assert "the loss is nan at step" in capsys.readouterr().err
    lines = read_metrics(tmp_path / "logged")
    assert lines and not math.isfinite(lines[-1]["loss"])
    for log_every in ("1", "1000"):  # found at a logged step, or at a checkpoint between logged steps
        run = tmp_path / f"log-{log_every}"
        assert train(run, f"training.log_every={log_every}") == 1
        for checkpoint in (run / "checkpoints").glob("step-*"):
            assert all(t.isfinite().all() for t in load_file(checkpoint / "model.safetensors").values()), checkpoint


def test_unusable_runs_exit_2_before_writing(shards_64, tmp_path, capsys):
    from mmbert.cli import main

    run = tmp_path / "run"
    train = ["train", "--config", str(TINY_RECIPE), "--output", str(run), "--no-progress"]
    assert main(train + ["data.shards=/nonexistent"]) == 2
    assert "packed shards not found: /nonexistent" in capsys.readouterr().err
    assert main(train + [f"data.shards={shards_64}", "phases.1.seq_len=128"]) == 2
    assert "phases[1] (mid_training).seq_len: the phase trains at 128" in capsys.readouterr().err
    assert main(train + [f"data.shards={shards_64}", "phases.0.top=null",
                         "phases.0.languages=[eng_Latn, zul_Latn]"]) == 2
    assert "no packed shards" in capsys.readouterr().err
    assert main(train + [f"data.shards={shards_64}", "batch.global_size=0"]) == 2
    assert "batch.global_size" in capsys.readouterr().err
    assert main(train + [f"data.shards={shards_64}", "model.num_heads=0"]) == 2
    assert "num_heads must be positive" in capsys.readouterr().err
    assert main(train + [f"data.shards={shards_64}", "model.norm_eps=-1"]) == 2
    assert "model: model config norm_eps must be positive" in capsys.readouterr().err
    assert main(train + [f"data.shards={shards_64}", "optimizer.weight_decay=.nan"]) == 2
    assert "optimizer.weight_decay: expected a finite number" in capsys.readouterr().err
    assert main(train + [f"data.shards={shards_64}", "phases.0.rope_theta=.inf"]) == 2
    assert "rope_theta: expected a finite number" in capsys.readouterr().err
    # the export records it and evaluation caps its inputs there: shorter than the training rows is a mistake
    assert main(train + [f"data.shards={shards_64}", "model.max_position_embeddings=32"]) == 2
    assert "model.max_position_embeddings 32 is shorter than the longest phase's seq_len 64" in capsys.readouterr().err
    assert not run.exists()
    (tmp_path / "afile").write_text("not a directory")
    for output in (tmp_path / "afile", tmp_path / "afile" / "run"):
        train[train.index("--output") + 1] = str(output)
        assert main(train + [f"data.shards={shards_64}"]) == 2
        assert "afile is a file; name a directory for the run" in capsys.readouterr().err


def test_export_and_merge_commands_take_checkpoints_or_runs(reference_run, shards_64, tmp_path, capsys):
    from mmbert.cli import main

    # A run directory, or its checkpoints/latest pointer (as `mmbert run` passes it), means its latest checkpoint.
    assert main(["export", str(reference_run / "checkpoints" / "latest"), "--output", str(tmp_path / "hf")]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "hf").iterdir()}
    checkpoints = reference_run / "checkpoints"
    assert main(["merge", "--method", "average", str(checkpoints / "step-00000035"), str(checkpoints / "step-00000040"),
                 "--output", str(tmp_path / "merged")]) == 0
    merged = load_file(tmp_path / "merged" / "model.safetensors")
    a, b = (load_file(checkpoints / name / "model.safetensors") for name in ("step-00000035", "step-00000040"))
    torch.testing.assert_close(merged["decoder_bias"], (a["decoder_bias"] + b["decoder_bias"]) / 2)
    assert main(["export", str(tmp_path / "nothing"), "--output", str(tmp_path / "x")]) == 2
    assert "not a checkpoint directory" in capsys.readouterr().err
    # A merged checkpoint has weights but no training state; a checkpoint of another shape is another model.
    train = ["train", "--config", str(TINY_RECIPE), "--output", str(tmp_path / "again"), *ARGS]
    shards = f"data.shards={shards_64}"
    assert main([*train, shards, "--resume", str(tmp_path / "merged")]) == 2
    assert "no training state (a merged checkpoint?)" in capsys.readouterr().err
    assert main([*train, shards, "model.num_layers=2", "--resume", str(checkpoints / "step-00000035")]) == 2
    assert "a different model from the recipe's: num_layers 3 there, 2 here" in capsys.readouterr().err
    # other weight-decay settings group the optimizer's tensors otherwise: named, not a ValueError from torch
    older = str(checkpoints / "step-00000035")
    assert main([*train, shards, "optimizer.decay_embeddings=false", "--resume", older]) == 2
    assert "optimizer groups hold [14, 9] tensors (decayed, undecayed), this run's [13, 10]" in capsys.readouterr().err
    assert not (tmp_path / "again" / "checkpoints").exists()


def test_compiled_run_trains_like_the_eager_run(reference_run, shards_64, tmp_path):
    """`training.compile: true` (blocks compiled, fixed gather capacity) through the whole CLI run: the same losses
    as the eager reference run, within float tolerance, the pre-training phase only (its 20 steps)."""
    run = tmp_path / "compiled"
    done = run_mmbert("train", "--config", str(TINY_RECIPE), "--output", str(run), *ARGS, f"data.shards={shards_64}",
                      "training.compile=true", "phases.1.budget=512", "phases.2.budget=512",
                      "schedule.decay_tokens=512", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    compiled = [m["loss"] for m in read_metrics(run)][:20]
    eager = [m["loss"] for m in read_metrics(reference_run)][:20]
    assert len(compiled) == 20
    np.testing.assert_allclose(compiled, eager, rtol=2e-3)


def test_training_needs_none_of_the_corpus_stack(shards_64, tmp_path):
    """The lent GPU machines have torch, pyarrow and transformers but not Beam, fastText or the extractors: `mmbert
    train` must not import them (bench/gpu_session.sh trains there). tests/training/gpu_image makes them unimportable."""
    env = {**environment(), "PYTHONPATH": f"{REPO_ROOT / 'tests' / 'training' / 'gpu_image'}:{REPO_ROOT}"}
    blocked = subprocess.run([sys.executable, "-c", "import apache_beam"], env=env, capture_output=True, text=True)
    assert blocked.returncode == 1 and "not on the GPU image" in blocked.stderr  # the simulation is in force
    run = tmp_path / "run"
    done = subprocess.run(mmbert_command("train", "--config", str(TINY_RECIPE), "--output", str(run), "--no-progress",
                                         f"data.shards={shards_64}", "phases.0.budget=1K", "phases.1.budget=1K",
                                         "phases.2.budget=1K", "schedule.warmup_tokens=256",
                                         "schedule.decay_tokens=512"),
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [m["phase"] for m in read_metrics(run)][-1] == "decay"
