"""Hostile inputs to `condpt generate` / `condpt eval` (issue H4's probes): each a clear error naming what is
wrong, before anything heavy runs."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from condpt.generate import Generator
from condpt.layout import load_run
from condpt.tiny import tiny_causal_lm


def _cli(*args):
    import condpt.cli.evidence
    import condpt.cli.tokens
    import condpt.cli.train  # noqa: F401  (register generate, eval and add-tokens)
    from condpt.cli import app

    return CliRunner().invoke(app, list(args))


def test_more_samples_than_memory_holds_are_refused_before_generating(tiny_run, monkeypatch):
    """`-n 100000000` grew until the kernel's OOM killer ended the process (and whatever else it chose)."""
    gen = Generator.load(tiny_run / "m", device="cpu")

    def never(*a, **k):
        raise AssertionError("generate ran")

    monkeypatch.setattr(gen.model, "generate", never)
    with pytest.raises(ValueError, match=r"100000000 samples .* need about .*GiB.*GiB"):
        gen.generate_ids("The robot", n=100_000_000, max_new_tokens=2)
    monkeypatch.setattr(Generator, "load", classmethod(lambda cls, d, device=None: gen))
    res = _cli("generate", str(tiny_run / "m"), "--prompt", "a", "-n", "100000000", "--max-new-tokens", "2")
    assert res.exit_code == 2 and "GiB" in res.output and "Traceback" not in res.output, res.output


def test_a_crashed_run_without_final_is_named(tiny_run, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "step_40").mkdir(parents=True)
    (out / "tokenizer").mkdir()
    (out / "run_config.yaml").write_text("seed: 0\n")
    for cmd in (["generate", str(out), "--prompt", "a"], ["eval", str(out)]):
        res = _cli(*cmd)
        assert res.exit_code == 2 and "final/" in res.output and "did not finish" in res.output, res.output
    shutil.copytree(tiny_run / "m", out / "final")
    with pytest.raises(FileNotFoundError, match=f"{out / 'final'}"):
        load_run(out, device="cpu")


def test_a_gguf_file_is_named(tmp_path):
    gguf = tmp_path / "model.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    for cmd in (["generate", str(gguf), "--prompt", "a"], ["eval", str(gguf)],
                ["add-tokens", str(gguf), "--out", str(tmp_path / "o")]):
        res = _cli(*cmd)
        assert res.exit_code == 2 and "GGUF" in res.output and "save_pretrained" in res.output, res.output


@pytest.mark.parametrize(("content", "why"), [
    (b'{"text": "fine"}\n{not json\n', r"heldout.jsonl:2: not JSON"),
    (b'{"txt": "x"}\n', r"heldout.jsonl:1: .*'text'"),
    (b'{"text": null}\n', r"heldout.jsonl:1: .*'text'"),
    (b'["text"]\n', r"heldout.jsonl:1: .*'text'"),
    (b'{"text": "a"}\n\xff\xfe\n', r"heldout.jsonl: not UTF-8"),
    (b"\n\n", r"heldout.jsonl: no held-out texts"),
    (None, r"heldout.jsonl: no such file"),
])
def test_a_bad_heldout_file_names_file_and_line_before_loading(tiny_run, tmp_path, monkeypatch, content, why):
    """A bad line was a JSONDecodeError message naming neither file nor line, a missing field a KeyError
    traceback (exit 1), a null text 'context and continuation must each have at least one token'."""
    world = tmp_path / "world"
    shutil.copytree(tiny_run / "world", world)
    if content is None:
        (world / "heldout.jsonl").unlink()
    else:
        (world / "heldout.jsonl").write_bytes(content)
    import condpt.evaluate

    monkeypatch.setattr(condpt.evaluate, "load_run", lambda *a, **k: pytest.fail("loaded the model first"))
    res = _cli("eval", str(tiny_run / "m"), "--world", str(world), "--per-split", "1")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert re.search(why, res.output), res.output


def test_a_good_heldout_file_still_evaluates(tiny_run, tmp_path):
    res = _cli("eval", str(tiny_run / "m"), "--world", str(tiny_run / "world"), "--per-split", "1",
               "--heldout-max-tokens", "30", "--out", str(tmp_path / "e.json"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e.json").read_text())["heldout_loss"]["none"]["tokens"] == 30




def test_a_continuation_longer_than_the_context_is_named():
    """A model whose context is shorter than a scenario's continuation lost the whole context to truncation
    and failed with 'context and continuation must each have at least one token'."""
    from condpt.evaluate import continuation_logprobs

    model = tiny_causal_lm("gpt2", 50, d_model=16, n_layer=1, n_head=2, max_positions=8)
    with pytest.raises(ValueError, match="continuation of 8 tokens.*8 positions"):
        continuation_logprobs(model, [[1, 2, 3]], [list(range(8))])
    assert continuation_logprobs(model, [[1, 2, 3]], [list(range(7))]).shape == (1,)
