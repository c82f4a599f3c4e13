"""The streamed add-tokens rewrite (tokenizer_ext/stream.py) gives exactly the tensors of the in-memory resize."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from condpt.tiny import tiny_causal_lm
from tokenizer_ext import ControlTokens, add_control_tokens, stream
from tokenizer_ext.resize import add_tokens_to_checkpoint, resize_model_for_tokens


def _save(model, tok, path: Path, **kw) -> Path:
    model.save_pretrained(path, **kw)
    tok.save_pretrained(path)
    return path


def _load(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype="auto").eval()


def _in_memory(src: Path, init: str = "mean"):
    """What the in-memory path makes of `src`: the resized model and tokenizer."""
    from transformers import AutoTokenizer

    model, tok = _load(src), AutoTokenizer.from_pretrained(str(src))
    known = set(tok.get_vocab())
    spec = ControlTokens()
    manifest = add_control_tokens(tok, spec)
    new_ids = [i for s, i in zip(spec.strings(), manifest.control_ids) if s not in known]
    resize_model_for_tokens(model, tok, manifest, init=init, new_ids=new_ids)
    return model, tok


def _assert_same_tensors(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def _check_reload(out: Path, reference, ref_tok, report) -> None:
    from transformers import AutoTokenizer

    assert report["rewrite"] == "streamed"
    after = _load(out)
    _assert_same_tensors(after, reference)
    assert after.config.vocab_size == report["embedding_rows_after"] == reference.config.vocab_size
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) == len(ref_tok) == report["tokenizer_len_after"]
    for s, i in zip(ControlTokens().strings(), report["control_ids"]):
        assert tok.encode(s, add_special_tokens=False) == [i]
    out_emb, out_head = after.get_input_embeddings().weight, after.get_output_embeddings().weight
    assert (out_emb.data_ptr() == out_head.data_ptr()) is report["tied_embeddings"]


ARCHS = [("gpt2", True), ("gpt2", False), ("llama", False), ("gpt_neox", True), ("gpt_neox", False),
         ("qwen2", False), ("qwen2", True)]


@pytest.mark.parametrize("arch, tie", ARCHS, ids=[f"{a}-{'tied' if t else 'untied'}" for a, t in ARCHS])
def test_streamed_equals_in_memory(tmp_path, tokenizer_factories, arch, tie, monkeypatch):
    tok = tokenizer_factories["sentencepiece"]()
    model = tiny_causal_lm(arch, len(tok), d_model=32, n_layer=1, n_head=2, tie_word_embeddings=tie,
                           eos_token_id=tok.eos_token_id, seed=1)
    src = _save(model, tok, tmp_path / "src")
    # a few rows per write, so the chunked copy and its boundaries are exercised
    monkeypatch.setattr(stream, "CHUNK_BYTES", 32 * 4 * 7)
    init = "text" if arch == "llama" else "mean"
    report = add_tokens_to_checkpoint(src, tmp_path / "out", init=init)
    _check_reload(tmp_path / "out", *_in_memory(src, init), report)
    assert report["params_after"] == sum(p.numel() for p in _load(tmp_path / "out").parameters())


def test_sharded_checkpoint(tmp_path, tokenizer_factories):
    tok = tokenizer_factories["sentencepiece"]()
    model = tiny_causal_lm("llama", len(tok), d_model=64, n_layer=2, n_head=2, tie_word_embeddings=False,
                           eos_token_id=tok.eos_token_id)
    src = _save(model, tok, tmp_path / "src", max_shard_size="100KB")
    shards = stream.shard_names(src)
    assert shards is not None and len(shards) > 2  # really sharded
    report = add_tokens_to_checkpoint(src, tmp_path / "out")
    out = tmp_path / "out"
    _check_reload(out, *_in_memory(src), report)
    index, old_index = (json.loads((d / stream.INDEX).read_text()) for d in (out, src))
    assert index["weight_map"] == old_index["weight_map"]
    data_bytes = sum(e.end - e.begin for s in shards for e in stream.read_header(out / s)[0].values())
    assert index["metadata"]["total_size"] == data_bytes
    if "total_parameters" in old_index["metadata"]:
        assert index["metadata"]["total_parameters"] == report["params_after"]


def test_untied_head_with_bias(tmp_path, tokenizer_factories):
    """Phi's lm_head has a bias: it grows too, every new entry the mean of the old ones."""
    from transformers import AutoModelForCausalLM, PhiConfig

    tok = tokenizer_factories["sentencepiece"]()
    cfg = PhiConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=2, max_position_embeddings=128, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        model.lm_head.bias.normal_()  # zeros would hide a wrong mean
    src = _save(model, tok, tmp_path / "src")
    report = add_tokens_to_checkpoint(src, tmp_path / "out")
    reference, ref_tok = _in_memory(src)
    _check_reload(tmp_path / "out", reference, ref_tok, report)
    bias = _load(tmp_path / "out").lm_head.bias
    n_old = report["embedding_rows_before"]
    assert bias.shape[0] == report["embedding_rows_after"] > n_old
    torch.testing.assert_close(bias[n_old:], model.lm_head.bias.float().mean().expand(bias.shape[0] - n_old))
    torch.testing.assert_close(bias[:n_old], model.lm_head.bias)


def test_pytorch_bin_checkpoint_is_resized_in_memory(tmp_path, tokenizer_factories):
    tok = tokenizer_factories["sentencepiece"]()
    model = tiny_causal_lm("gpt2", len(tok), d_model=32, n_layer=1, n_head=2, eos_token_id=tok.eos_token_id)
    src = tmp_path / "src"
    _save(model, tok, src)
    (src / stream.SINGLE).unlink()
    torch.save(model.state_dict(), src / "pytorch_model.bin")
    report = add_tokens_to_checkpoint(src, tmp_path / "out")
    assert report["rewrite"] == "in_memory"
    after = _load(tmp_path / "out")
    n_old = report["embedding_rows_before"]
    torch.testing.assert_close(after.get_input_embeddings().weight[:n_old], model.get_input_embeddings().weight)


def test_grow_checkpoint_file_format(tmp_path):
    """Unchanged tensors and metadata come through byte for byte; the file reads back with safetensors."""
    from safetensors.torch import save_file

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    emb = torch.arange(30, dtype=torch.bfloat16).view(10, 3)
    tensors = {"b.other": torch.randn(4, 5), "a.emb": emb, "c.ids": torch.arange(7)}
    save_file(tensors, str(src / stream.SINGLE), metadata={"format": "pt", "note": "kept"})
    fill = torch.tensor([-1.0, -2.0, -3.0])

    def new_rows(read, n_old):
        assert torch.equal(read(2, 4), emb[2:4])
        return fill, {3: torch.zeros(3), 11: torch.ones(3)}

    assert stream.grow_checkpoint(src, out, 13, {"a.emb": new_rows}) == [stream.SINGLE]
    with safe_open(str(out / stream.SINGLE), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "note": "kept"}
        grown = f.get_tensor("a.emb")
        assert torch.equal(f.get_tensor("b.other"), tensors["b.other"])
        assert torch.equal(f.get_tensor("c.ids"), tensors["c.ids"])
    want = torch.cat([emb, fill.to(torch.bfloat16).expand(3, 3)])
    want[3], want[11] = 0, 1
    assert grown.dtype == torch.bfloat16 and torch.equal(grown, want)

    with pytest.raises(stream.StreamError, match="not in the checkpoint"):
        stream.grow_checkpoint(src, out, 13, {"missing": new_rows})
    with pytest.raises(stream.StreamError, match="not a float"):
        stream.grow_checkpoint(src, out, 13, {"c.ids": new_rows})
