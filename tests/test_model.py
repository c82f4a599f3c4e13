"""The model a run trains (`condpt.model`): its FLOPs per token, and continued pretraining of a checkpoint:
`build_model` gives the control tokens their rows with tokenizer_ext's resize, as `condpt add-tokens` does (mean
of the old rows, or `model.token_init: text`), never with transformers' `resize_token_embeddings` (whose
mean_resizing *samples* rows around the mean); control ids that land in a checkpoint's spare (padding) rows are
initialised too, and rows the checkpoint already has are kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from condpt.model import flops_per_token
from condpt.tiny import tiny_causal_lm

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bpe(english_texts):
    from condpt.tiny import train_bpe_tokenizer

    return lambda: train_bpe_tokenizer(english_texts, vocab_size=400)


def _checkpoint(path: Path, tok, rows: int | None = None, arch: str = "gpt2") -> Path:
    torch.manual_seed(0)
    model = tiny_causal_lm(arch, rows or len(tok), d_model=32, n_layer=1, n_head=2, max_positions=64)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _build(tmp_path: Path, ckpt: Path, *overrides: str):
    from condpt.config import load_config
    from condpt.model import build_model
    from condpt.tokenizer import prepare_tokenizer

    cfg = load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [
        f"output_dir={tmp_path / 'run'}", "model.config=null", f"model.checkpoint={ckpt}",
        "tokenizer.source=checkpoint", "data.block_size=64", *overrides])
    tok, manifest = prepare_tokenizer(cfg, tmp_path / "run" / "tokenizer")
    return build_model(cfg, tok, manifest), tok, manifest


def _old_rows(ckpt: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(ckpt)).get_input_embeddings().weight.detach()


def test_mean_init_is_exactly_the_mean_of_the_old_rows(tmp_path, bpe):
    tok = bpe()
    ckpt = _checkpoint(tmp_path / "base", tok)
    model, tok2, manifest = _build(tmp_path, ckpt, "model.vocab_multiple=8")
    old = _old_rows(ckpt)
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape[0] == -(-len(tok2) // 8) * 8 and head is emb
    assert torch.equal(emb[: len(tok)], old)
    mean = old.double().mean(0).float()
    for i in [*manifest.control_ids, *range(len(tok2), emb.shape[0])]:  # control tokens and padding rows
        torch.testing.assert_close(emb[i], mean, rtol=0, atol=1e-6)


def test_text_init_starts_a_tag_at_its_description(tmp_path, bpe):
    from tokenizer_ext import encode_untrusted

    tok = bpe()
    ckpt = _checkpoint(tmp_path / "base", tok, arch="llama")
    model, _, manifest = _build(tmp_path, ckpt, "model.token_init=text")
    old = _old_rows(ckpt)
    good = encode_untrusted(tok, [manifest.spec.tags[0].description])[0]
    torch.testing.assert_close(model.get_input_embeddings().weight[manifest.tag_id("good")], old[good].mean(0))
    head = model.get_output_embeddings().weight
    if head is not model.get_input_embeddings().weight:  # untied: the head's row from the head's own rows
        assert not torch.equal(head[manifest.tag_id("good")], head[: len(tok)].mean(0))


def test_control_ids_in_spare_rows_are_initialised(tmp_path, bpe):
    """A checkpoint padded past its tokenizer: the control ids land in rows it never trained."""
    tok = bpe()
    ckpt = _checkpoint(tmp_path / "base", tok, rows=len(tok) + 16)
    model, _, manifest = _build(tmp_path, ckpt)
    old = _old_rows(ckpt)
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == old.shape[0]  # the ids fit: no resize
    mean = old.double().mean(0).float()  # of every old row, as `condpt add-tokens` takes it
    for i in manifest.control_ids:
        torch.testing.assert_close(emb[i], mean, rtol=0, atol=1e-6)
        assert not torch.equal(emb[i], old[i])


def test_rows_the_checkpoint_already_has_are_kept(tmp_path, bpe):
    """An add-tokens output (or a condpt export) has its control tokens: their rows are trained, not re-set."""
    from tokenizer_ext.resize import add_tokens_to_checkpoint

    tok = bpe()
    base = _checkpoint(tmp_path / "base", tok)
    added = tmp_path / "added"
    add_tokens_to_checkpoint(base, added, pad_to_multiple_of=None)
    with torch.no_grad():  # stand in for training: the control rows move away from the mean
        from transformers import AutoModelForCausalLM

        m = AutoModelForCausalLM.from_pretrained(str(added))
        m.get_input_embeddings().weight[len(tok):] += 1.0
        m.save_pretrained(added)
    model, _, _ = _build(tmp_path, added)
    assert torch.equal(model.get_input_embeddings().weight, _old_rows(added))


def test_token_init_is_refused_without_a_checkpoint(tmp_path):
    from condpt.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="model.token_init"):
        load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [f"output_dir={tmp_path}", "model.token_init=text"])


def test_flops_per_token_is_6n_plus_attention():
    model = tiny_causal_lm("gpt2", 1000, d_model=64, n_layer=2, n_head=4, max_positions=128)
    n = sum(p.numel() for p in model.parameters()) - 128 * 64  # position table is a lookup
    assert flops_per_token(model, 128) == pytest.approx(6 * n + 12 * 2 * 64 * 128)


def test_continued_pretraining_adds_control_tokens_to_a_checkpoint(tmp_path, english_texts):
    from condpt.config import load_config
    from condpt.model import build_model
    from condpt.tiny import train_bpe_tokenizer
    from condpt.tokenizer import prepare_tokenizer

    tok = train_bpe_tokenizer(english_texts, vocab_size=400)
    base = tiny_causal_lm("gpt2", len(tok), d_model=32, n_layer=1, n_head=2, max_positions=64)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    cfg = load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [
        f"output_dir={tmp_path / 'run'}", "model.config=null", f"model.checkpoint={tmp_path / 'base'}",
        "tokenizer.source=checkpoint", "data.block_size=64"])
    tok2, manifest = prepare_tokenizer(cfg, tmp_path / "run" / "tokenizer")
    assert len(tok2) == len(tok) + 3 and manifest.tag_id("good") >= len(tok)
    model = build_model(cfg, tok2, manifest)
    assert model.get_input_embeddings().weight.shape[0] == len(tok2)
    # the old rows are the checkpoint's, untouched
    old = base.get_input_embeddings().weight
    assert torch.equal(model.get_input_embeddings().weight[: len(tok)], old)
    # a second call reuses the saved tokenizer (same ids on every rank and on resume)
    tok3, manifest3 = prepare_tokenizer(cfg, tmp_path / "run" / "tokenizer")
    assert manifest3 == manifest and len(tok3) == len(tok2)
