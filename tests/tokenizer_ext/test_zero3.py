"""The in-memory resize under DeepSpeed ZeRO-3 (2 CPU processes), compared with the same resize without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from condpt.tiny import tiny_causal_lm
from tokenizer_ext import add_control_tokens, encode_untrusted
from tokenizer_ext.resize import resize_model_for_tokens
from tokenizer_ext.sample_text import SAMPLE_TEXT

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.mark.slow
def test_resize_under_zero3_matches_plain(tmp_path, tokenizer_factories):
    pytest.importorskip("deepspeed")
    tok = tokenizer_factories["sentencepiece"]()
    models = {}
    for tie in (True, False):
        models[tie] = tiny_causal_lm("llama", len(tok), d_model=32, n_layer=1, n_head=2, tie_word_embeddings=tie,
                                     eos_token_id=tok.eos_token_id, seed=int(tie))
        models[tie].save_pretrained(tmp_path / f"tied{tie}")
        tok.save_pretrained(tmp_path / f"tied{tie}")

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(HERE / "zero3_accelerate.yaml"), "--main_process_port", "0", str(HERE / "zero3_resize_main.py"),
           str(tmp_path), str(tmp_path / "tiedTrue"), str(tmp_path / "tiedFalse")]
    proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for tie, model in models.items():
        _compare(torch.load(tmp_path / f"zero3_tied{tie}.pt"), model, tokenizer_factories, tie)


def _compare(res, model, tokenizer_factories, tie):
    """The ZeRO-3 result equals the same resize on the plain (unpartitioned) model."""
    ref_tok = tokenizer_factories["sentencepiece"]()
    man = add_control_tokens(ref_tok)
    sizes = resize_model_for_tokens(model, ref_tok, man, init="mean", pad_to_multiple_of=64)
    assert res["control_ids"] == man.control_ids
    assert res["sizes"] == sizes and sizes["embedding_rows_after"] % 64 == 0 and sizes["tied_embeddings"] is tie
    torch.testing.assert_close(res["weights"]["in"], model.get_input_embeddings().weight)
    torch.testing.assert_close(res["weights"]["out"], model.get_output_embeddings().weight)
    ids = torch.tensor([encode_untrusted(ref_tok, SAMPLE_TEXT[:1])[0][:32]])
    assert torch.equal(res["ids"], ids)
    with torch.no_grad():
        ref_logits = model(input_ids=ids).logits[0].float()
    torch.testing.assert_close(res["logits"], ref_logits, rtol=1e-4, atol=1e-4)
    assert res["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(ref_logits[:-1], ids[0, 1:])),
                                        rel=1e-4)
