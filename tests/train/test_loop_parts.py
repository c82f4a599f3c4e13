"""Pieces of the loop that need no processes: checkpoint discovery, the metrics log, the stop vote, resuming into
the same data order; and one single-process run, stopped and resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from condpt.checkpoints import latest_checkpoint
from condpt.train import MetricsLog

REPO = Path(__file__).resolve().parents[2]


def test_latest_checkpoint_needs_trainer_state(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step, complete in [(5, True), (10, True), (15, False)]:
        d = tmp_path / "checkpoints" / f"step_{step:08d}"
        d.mkdir(parents=True)
        if complete:
            (d / "trainer_state.json").write_text(json.dumps({"step": step}))
    assert latest_checkpoint(tmp_path).name == "step_00000010"


def test_metrics_log_truncates_past_resume_point(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, True, None)
    for s in (1, 2, 3, 4):
        log.write({"step": s, "loss": float(s)})
    MetricsLog(path, True, 2).write({"step": 3, "loss": 9.0})
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 1.0), (2, 2.0), (3, 9.0)]


def test_stop_reason():
    from condpt.train import stop_reason

    assert stop_reason(True, 3, 10, 10) == "preempted"
    assert stop_reason(True, 10, 10, 10) == "preempted"  # a signal at the last step still checkpoints
    assert stop_reason(False, 5, 5, 10) == "stopped"  # train.stop_after
    assert stop_reason(False, 10, 10, 10) is None  # the end: export, no checkpoint
    assert stop_reason(False, 4, 5, 10) is None


def test_model_inputs_and_dropout_seed():
    from condpt.train import dropout_seed, model_inputs

    batch = {k: torch.zeros(1, 4, dtype=torch.long) for k in ("input_ids", "position_ids", "labels", "tag_index")}
    assert set(model_inputs(batch, ("input_ids",))) == {"input_ids", "use_cache"}
    masked = model_inputs(batch, ("input_ids", "position_ids"))
    assert set(masked) == {"input_ids", "position_ids", "use_cache"} and masked["use_cache"] is False
    seeds = {dropout_seed(0, s, r) for s in range(50) for r in range(8)}
    assert len(seeds) == 400 and dropout_seed(1, 2, 3) == dropout_seed(1, 2, 3)


def test_micro_batches_resume_into_the_same_order():
    """From micro-batch k, `_micro_batches` yields what an uninterrupted pass yields from k on, across epochs,
    each epoch cut to whole optimizer steps."""
    from accelerate import Accelerator, DataLoaderConfiguration
    from torch.utils.data import DataLoader

    from condpt.train import _micro_batches

    acc = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=0))
    dl = acc.prepare(DataLoader([{"x": torch.tensor(i)} for i in range(10)], batch_size=2, shuffle=True,
                                drop_last=True))

    class _Loop:  # the two fields `_micro_batches` reads
        accelerator, train_dl, micro_per_epoch = acc, dl, 4  # 5 batches cut to 2 steps of grad_accum 2

    def take(start: int, n: int) -> list[tuple[int, list[int]]]:
        it = _micro_batches(_Loop, start)
        return [(e, b["x"].tolist()) for e, b in (next(it) for _ in range(n))]

    full = take(0, 12)
    assert [e for e, _ in full] == [0] * 4 + [1] * 4 + [2] * 4
    assert full[:4] != full[4:8]  # a new order each epoch
    for k in (1, 4, 6):
        assert take(k, 12 - k) == full[k:]


def test_single_process_stop_after_then_resume_matches_an_uninterrupted_run(tmp_path, restore_signals):
    """The loop without DeepSpeed (clip_grad_norm_, one process): `train.stop_after` checkpoints and stops,
    rerunning resumes and reproduces the uninterrupted losses; a finished run is not trained again."""
    from condpt.config import load_config
    from condpt.train import train

    def cfg(out, *extra):
        return load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [
            f"output_dir={out}", "model.config={arch: gpt2, d_model: 32, n_layer: 1, n_head: 2}",
            "tokenizer.vocab_size=300", "data.block_size=64", "train.micro_batch_size=4", "train.grad_accum=2",
            "train.max_steps=4", "train.log_every=1", "train.eval_every=2", "train.eval_batches=1",
            "train.save_every=0", "train.peak_flops=1e10", "optim.warmup_steps=1", *extra])

    def losses(out):
        return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                if "loss" in r}

    whole = train(cfg(tmp_path / "whole"))
    assert whole["status"] == "done" and whole["step"] == 4 and whole["last"]["step"] == 4 and "eval" in whole
    stopped = train(cfg(tmp_path / "split", "train.stop_after=2"))
    assert stopped["status"] == "stopped" and stopped["step"] == 2 and "final" not in stopped
    assert (tmp_path / "split" / "checkpoints" / "step_00000002" / "trainer_state.json").is_file()
    resumed = train(cfg(tmp_path / "split"))
    assert resumed["status"] == "done" and Path(resumed["final"]).is_dir()
    assert losses(tmp_path / "split") == pytest.approx(losses(tmp_path / "whole"), rel=1e-6)
    assert train(cfg(tmp_path / "split"))["skipped"]


class _FullDisk:
    """An accelerator whose save_state writes a shard, then finds the disk full (as torch's zip writer says it)."""

    is_main_process = True

    def __init__(self, error):
        self.error = error

    def save_state(self, path):
        Path(path).mkdir(parents=True)
        (Path(path) / "model.safetensors").write_bytes(b"half")
        raise self.error

    def wait_for_everyone(self):
        pass


def test_a_checkpoint_the_disk_cannot_take_is_one_named_error_and_removed(tmp_path, monkeypatch):
    """Was a torch traceback ('[enforce fail at inline_container.cc:672] . unexpected pos') with the half-written
    step directory left to fill the disk again on the rerun."""
    import errno
    import shutil
    from types import SimpleNamespace

    from condpt import train

    loop = SimpleNamespace(accelerator=_FullDisk(OSError(errno.ENOSPC, "No space left on device")), out=tmp_path,
                           cfg=SimpleNamespace(seed=0, train=SimpleNamespace(keep_last=1)))
    with pytest.raises(train.SaveFailed, match=r"cannot save checkpoint .*step_00000004 \(.* MiB free there\): "
                                               r".*No space left on device; it was removed"):
        train._save_checkpoint(loop, 4)
    assert not (tmp_path / "checkpoints" / "step_00000004").exists()
    loop.accelerator = _FullDisk(RuntimeError("unexpected pos 72768 vs 72656"))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1 << 20))
    with pytest.raises(train.SaveFailed, match="unexpected pos"):
        train._save_checkpoint(loop, 4)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1 << 40))
    with pytest.raises(RuntimeError, match="unexpected pos") as e:  # room enough: not the disk, the writer's own
        train._save_checkpoint(loop, 4)
    assert not isinstance(e.value, train.SaveFailed)


def test_a_fresh_start_under_another_tokenizer_config_builds_its_own_tokenizer(tmp_path, restore_signals):
    """OUTPUT_DIR/tokenizer was reused whatever the config: a run started over (resume: never) with another
    vocab_size trained, and exported, the old 300-token tokenizer."""
    from condpt.config import load_config
    from condpt.train import train

    def run(*extra):
        return train(load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [
            f"output_dir={tmp_path}", "model.config={arch: gpt2, d_model: 32, n_layer: 1, n_head: 2}",
            "data.block_size=64", "train.micro_batch_size=4", "train.max_steps=1", "train.eval_every=0",
            "train.eval_batches=1", "train.save_every=0", "train.peak_flops=1e10", "optim.warmup_steps=1", *extra]))

    def vocab():
        from transformers import AutoTokenizer

        return len(AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer")))

    run("tokenizer.vocab_size=300")
    small = vocab()
    run("tokenizer.vocab_size=400", "train.resume=never")
    assert vocab() > small
