"""`condpt.checkpoints`: a run resumes only a checkpoint of its own model, tokenizer, data, seed and batch shape
(a checkpoint of another d_model was a traceback of tensor shape mismatches from accelerate's load_state; one
of another tokenizer or data of the same shapes trained on without a word)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from condpt.config import ConfigError, load_config, read_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "configs" / "tiny-cpu.yaml"


def _checkpoint(out: Path, overrides: list[str], step: int = 2) -> Path:
    """A complete checkpoint as `_save_checkpoint` leaves it, of the tiny config with `overrides`."""
    ckpt = out / "checkpoints" / f"step_{step:08d}"
    ckpt.mkdir(parents=True)
    (ckpt / "run_config.yaml").write_text(read_config(TINY, [f"output_dir={out}", *overrides]).to_yaml())
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": step, "seed": 0}))
    return ckpt


def test_resuming_under_another_model_is_named_before_any_process_starts(tmp_path):
    out = tmp_path / "run"
    ckpt = _checkpoint(out, ["model.config={arch: gpt2, d_model: 32, n_layer: 2, n_head: 4}"])
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [f"output_dir={out}"])  # resume: auto
    msg = str(e.value)
    assert f"train.resume (line 20): {ckpt} was trained under another config (model.config.d_model: 32 there, " \
        "64 here)" in msg  # line 20: the train section, which leaves resume at auto
    assert "auto: the newest checkpoint in output_dir" in msg and "train.resume=never" in msg, msg
    with pytest.raises(ConfigError, match=r"train.resume \(override\): .*d_model: 32 there, 64 here"):
        load_config(TINY, [f"output_dir={tmp_path / 'other'}", f"train.resume={ckpt}"])
    assert load_config(TINY, [f"output_dir={out}", "train.resume=never"])


@pytest.mark.parametrize("theirs, why", [
    (["tokenizer.vocab_size=512"], "tokenizer.vocab_size: 512 there, 2048 here"),  # same model: other ids
    (["data.policy.mode=filter"], "data.policy.mode: 'filter' there, 'condition' here"),
    (["seed=1"], "seed: 1 there, 0 here"),
    (["train.micro_batch_size=4"], "train.micro_batch_size: 4 there, 8 here"),
])
def test_what_a_resume_must_share(tmp_path, theirs, why):
    out = tmp_path / "run"
    _checkpoint(out, theirs)
    with pytest.raises(ConfigError, match=why):
        load_config(TINY, [f"output_dir={out}"])


def test_what_a_resume_may_change(tmp_path):
    out = tmp_path / "run"
    _checkpoint(out, ["train.max_steps=30", "optim.lr=1e-3", "train.save_every=5", "train.log_every=1"])
    assert load_config(TINY, [f"output_dir={out}"]).train.max_steps == 60


def test_a_checkpoint_from_before_checkpoints_kept_their_config_is_resumed_unchecked(tmp_path):
    out = tmp_path / "run"
    (_checkpoint(out, ["seed=5"]) / "run_config.yaml").unlink()
    assert load_config(TINY, [f"output_dir={out}"])


def test_a_resume_path_that_is_an_export_or_a_run_directory_says_what_to_use(tmp_path):
    """An exported final/ has a trainer_state.json too: it passed, then accelerate's load_state failed on the
    optimizer.bin it does not have (a FileNotFoundError traceback)."""
    run = tmp_path / "run"
    ckpt = _checkpoint(run, [])
    final = run / "final"
    final.mkdir()
    for name in ("config.json", "trainer_state.json", "run_config.yaml"):
        (final / name).write_text((ckpt / name).read_text() if (ckpt / name).exists() else "{}")
    other = f"output_dir={tmp_path / 'other'}"
    with pytest.raises(ConfigError, match=rf"{final}: an exported model .*use model.checkpoint={final}"):
        load_config(TINY, [other, f"train.resume={final}"])
    with pytest.raises(ConfigError, match=rf"{run}: a run directory, not a checkpoint; its newest is {ckpt}"):
        load_config(TINY, [other, f"train.resume={run}"])
    assert load_config(TINY, [other, f"train.resume={ckpt}"])


def test_an_old_checkpoint_of_other_shapes_is_one_line(tmp_path):
    """A checkpoint without run_config.yaml is not refused at load: its size mismatch was a page of traceback."""
    from condpt.checkpoints import ResumeError, load_checkpoint

    class Accelerator:
        def __init__(self, error):
            self.error = error

        def load_state(self, path):
            raise self.error

    mismatch = RuntimeError("Error(s) in loading state_dict for GPT2LMHeadModel:\n\tsize mismatch for "
                            "transformer.wte.weight: copying a param with shape torch.Size([512, 32]) from checkpoint, "
                            "the shape in current model is torch.Size([512, 64]).\n\tsize mismatch for ...")
    with pytest.raises(ResumeError, match=r"train.resume: .*step_2 holds a model of other shapes than this config's "
                                          r"\(size mismatch for transformer.wte.weight: .*\); use train.resume=never"):
        load_checkpoint(Accelerator(mismatch), tmp_path / "step_2")
    with pytest.raises(RuntimeError, match="out of memory"):  # anything else stays what it was
        load_checkpoint(Accelerator(RuntimeError("out of memory")), tmp_path / "step_2")
