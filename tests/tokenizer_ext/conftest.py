"""Tokenizers the tokenizer_ext tests share: real GPT-2 BPE, a Llama-style SentencePiece tokenizer with an NFKC
normaliser, and a BPE that already has added special tokens (plain and special); and a small checkpoint."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sp_training_texts(english_texts) -> list[str]:
    return english_texts[:60]


def _sp(texts):
    from condpt.tiny import train_sentencepiece_tokenizer

    return train_sentencepiece_tokenizer(texts, vocab_size=800)


def _preloaded(texts):
    from tokenizers import AddedToken

    from condpt.tiny import train_bpe_tokenizer

    tok = train_bpe_tokenizer(texts, vocab_size=800)
    tok.add_special_tokens({"extra_special_tokens": ["<|im_start|>", "<|im_end|>", "[MASK]"]})
    tok.add_tokens([AddedToken("<tool>", normalized=False), "domainword"])
    return tok


@pytest.fixture(scope="session")
def tokenizer_factories(sp_training_texts):
    """name -> zero-argument factory of a fresh (mutable) tokenizer."""
    from condpt.tiny import gpt2_tokenizer

    return {
        "gpt2": gpt2_tokenizer,
        "sentencepiece": lambda: _sp(sp_training_texts),
        "preloaded": lambda: _preloaded(sp_training_texts),
    }


@pytest.fixture(scope="session")
def extended(tokenizer_factories):
    """name -> (tokenizer with control tokens, manifest); session-wide, tests must not mutate them."""
    from tokenizer_ext import add_control_tokens

    out = {}
    for name, make in tokenizer_factories.items():
        tok = make()
        out[name] = (tok, add_control_tokens(tok))
    return out


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory, sp_training_texts):
    """A tiny tied GPT-2 checkpoint with a 300-piece SentencePiece-style tokenizer; tests must not write into it."""
    from test_resize import make_checkpoint

    from condpt.tiny import train_sentencepiece_tokenizer

    tok = train_sentencepiece_tokenizer(sp_training_texts, vocab_size=300)
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "src", tok, "gpt2", tie=True)
