"""The coherence fine-tune in the loop, one process (no DeepSpeed; tests/train/test_route.py runs it under ZeRO-2
and ZeRO-3): its steps follow `train.max_steps` at lr × lr_scale, marked in metrics.jsonl; final-unablated/ is
the model the main steps made; a run stopped inside the phase resumes to the same losses and weights; a run
that lost final-unablated/ is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
MAX, COHERENCE = 3, 2


def cfg(out: Path, *extra: str):
    from condpt.config import load_config

    return load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [
        f"output_dir={out}", "model.config={arch: gpt2, d_model: 32, n_layer: 2, n_head: 2}",
        "tokenizer.vocab_size=300", "data.block_size=64", "train.micro_batch_size=4", "train.grad_accum=2",
        f"train.max_steps={MAX}", "train.log_every=1", "train.eval_every=0", "train.eval_batches=1",
        "train.save_every=0", "train.peak_flops=1e10", "optim.warmup_steps=1", "optim.lr=1e-3",
        "data.policy.mode=route", "data.policy.threshold=0.5",
        f"data.policy.route={{width: 8, other_tokens: train, coherence: {{steps: {COHERENCE}, lr_scale: 0.1}}}}",
        *extra])


def rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]


def weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def test_coherence_steps_follow_the_main_steps_and_resume_inside_the_phase(tmp_path, restore_signals):
    from condpt.train import train

    whole = train(cfg(tmp_path / "whole"))
    assert whole["status"] == "done" and whole["step"] == MAX + COHERENCE
    logged = [r for r in rows(tmp_path / "whole") if "loss" in r]
    assert [r["step"] for r in logged] == list(range(1, MAX + COHERENCE + 1))
    assert [r.get("phase") for r in logged] == [None] * MAX + ["coherence"] * COHERENCE
    assert all(r["lr"] == pytest.approx(1e-4) for r in logged[MAX:])
    evals = [(r["step"], r.get("phase")) for r in rows(tmp_path / "whole") if "eval" in r]
    assert evals == [(MAX, None), (MAX, "coherence"), (MAX + COHERENCE, "coherence")]  # routed, ablated, tuned
    unablated, final = weights(tmp_path / "whole" / "final-unablated"), weights(tmp_path / "whole" / "final")
    assert unablated.keys() == final.keys() and (tmp_path / "whole" / "final-unablated" / "routed.safetensors").is_file()
    assert any(not torch.equal(unablated[k], final[k]) for k in final)  # the fine-tune changed the ablated model

    split = tmp_path / "split"
    stopped = train(cfg(split, f"train.stop_after={MAX + 1}"))
    assert stopped["status"] == "stopped" and stopped["step"] == MAX + 1 and "final" not in stopped
    assert (split / "final-unablated" / "config.json").is_file() and not (split / "final").exists()
    resumed = train(cfg(split))
    assert resumed["status"] == "done" and any(r.get("event") == "resumed" for r in rows(split))
    losses = {r["step"]: r["loss"] for r in rows(split) if "loss" in r}
    assert losses == pytest.approx({r["step"]: r["loss"] for r in logged}, rel=1e-6)
    for k, v in weights(split / "final").items():
        torch.testing.assert_close(v, final[k], rtol=1e-5, atol=1e-7)


def test_resuming_inside_the_phase_without_final_unablated_is_refused(tmp_path, restore_signals):
    import shutil

    from condpt.train import train

    out = tmp_path / "run"
    assert train(cfg(out, f"train.stop_after={MAX + 1}"))["status"] == "stopped"
    shutil.rmtree(out / "final-unablated")
    with pytest.raises(FileNotFoundError, match="final-unablated.*resumes inside the coherence"):
        train(cfg(out))


def test_fresh_moments_make_adamw_start_afresh_through_wrappers():
    """Zeroed in place through accelerate's and DeepSpeed's `.optimizer` wrappers: the next step is a fresh
    AdamW's (a zero gradient then moves nothing)."""
    from condpt.train import _fresh_moments

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=0.1, weight_decay=0.0, foreach=True)
    for _ in range(3):
        p.grad = torch.tensor([1.0, -2.0, 3.0])
        opt.step()
    before = p.detach().clone()

    class Wrapper:  # accelerate's / DeepSpeed's: the wrapped optimizer at `.optimizer`
        def __init__(self, inner):
            self.optimizer = inner

    _fresh_moments(Wrapper(Wrapper(opt)))
    p.grad = torch.zeros(3)
    opt.step()
    assert torch.equal(p.detach(), before)
    assert float(opt.state[p]["step"]) == 1.0
