"""The post-check's repair keeps the text's meaning on SentencePiece-style (Metaspace) tokenizers (issue 9).

On these tokenizers the special strings (`</s>`, `<s>`, `<pad>`, ...) are also ordinary pieces that the model reaches
from text, so the repair runs often. It used to re-encode each character of the special as a separate text, which a
Metaspace pre-tokenizer prefixes with "▁": "é</s>é" came back as "é < / s >é". Property tested here, on
tokenizers built in-process (T5-style Unigram, Llama-style Unigram with byte fallback, Llama-style legacy BPE, and a
Metaspace BPE): for every probe string s, `decode(encode_untrusted(s))` is the text the tokenizer's own pipeline
makes of s when no token is special (same normaliser, pre-tokenizer, model and decoder, no added tokens), and no
special id appears."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokext_adversarial import SELF, corpus

from tokenizer_ext import add_control_tokens, encode_untrusted, escape_untrusted, special_ids

SPECIALS = ["<pad>", "</s>", "<s>", "<unk>"]
NEIGHBOURS = ["", "é", "a", "A", " ", "  ", "\n", "\t", "▁", "1", ".", "<", ">", "/", "s", "é ", " é", "日本",
              "\U0001f600", "\ufffd", SELF]


def _training_texts(english_texts) -> list[str]:
    # the special strings occur as ordinary text, so the trained models reach them (as real SentencePiece
    # vocabularies do: their control pieces are plain vocabulary entries in the converted tokenizer.json)
    extra = [f"{a}{s}{b}" for s in SPECIALS for a in ("", " ", "é", *"abcdefghijklmnop") for b in ("", " ", "é")]
    return [*english_texts[:60], *(" ".join(extra) for _ in range(30)), "Café résumé naïve élan 日本 😀" * 5]


def _unigram(texts, *, byte_fallback: bool, prepend: str, angle_brackets: bool = True):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    bk = Tokenizer(models.Unigram())
    bk.normalizer = normalizers.NFKC()
    bk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend)
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=SPECIALS, unk_token="<unk>",
                                      show_progress=False)
    bk.train_from_iterator(texts, trainer=trainer)
    if not angle_brackets:  # like T5, which has no "<": that character becomes unk in any text
        state = json.loads(bk.to_str())
        state["model"]["vocab"] = [[p, score] for p, score in state["model"]["vocab"]
                                   if p in SPECIALS or not {"<", ">"} & set(p)]
        bk = Tokenizer.from_str(json.dumps(state))
    if byte_fallback:  # Llama/Gemma-style: <0xNN> pieces, no unk for unseen characters
        state = json.loads(bk.to_str())
        known = {p for p, _ in state["model"]["vocab"]}
        state["model"]["vocab"] += [[f"<0x{i:02X}>", -50.0] for i in range(256) if f"<0x{i:02X}>" not in known]
        state["model"]["byte_fallback"] = True
        bk = Tokenizer.from_str(json.dumps(state))
        bk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                        decoders.Strip(" ", 1, 0)])
    else:  # T5-style
        bk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=prepend)
    return bk


def _bpe(texts, *, legacy: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    bk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>", *byte_tokens], show_progress=False)
    bk.train_from_iterator(texts, trainer=trainer)
    if legacy:  # Llama-2's tokenizer.json: the spaces become "▁" in the normaliser, no pre-tokenizer
        bk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        bk.pre_tokenizer = None
    else:
        bk.normalizer = normalizers.NFKC()
    bk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    return bk


def _wrap(bk):
    """(the tokenizer under test, the reference: the same pipeline with no added tokens, and for Unigram without
    the special pieces, so that a character the vocabulary lacks is unk there too; BPE here falls back to bytes)."""
    from transformers import PreTrainedTokenizerFast

    state = json.loads(bk.to_str())
    state["added_tokens"] = []
    model = state["model"]
    if model["type"] == "Unigram":
        unk = model["vocab"][model["unk_id"]][0]
        model["vocab"] = [[p, s] for p, s in model["vocab"] if p not in SPECIALS or p == unk]
        model["unk_id"] = [p for p, _ in model["vocab"]].index(unk)
    plain = type(bk).from_str(json.dumps(state))
    tok = PreTrainedTokenizerFast(tokenizer_object=bk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>")
    add_control_tokens(tok)
    return tok, plain


@pytest.fixture(scope="module")
def metaspace_tokenizers(english_texts):
    texts = _training_texts(english_texts)
    return {
        "t5_unigram": _wrap(_unigram(texts, byte_fallback=False, prepend="always")),
        "t5_unigram_no_angle_brackets": _wrap(_unigram(texts, byte_fallback=False, prepend="always",
                                                       angle_brackets=False)),
        "llama_unigram_byte_fallback": _wrap(_unigram(texts, byte_fallback=True, prepend="first")),
        "llama_legacy_bpe": _wrap(_bpe(texts, legacy=True)),
        "metaspace_bpe": _wrap(_bpe(texts, legacy=False)),
    }


NAMES = ["t5_unigram", "t5_unigram_no_angle_brackets", "llama_unigram_byte_fallback", "llama_legacy_bpe", "metaspace_bpe"]


def _reference(plain, text: str) -> str:
    text = re.sub("[\ud800-\udfff]", "\ufffd", escape_untrusted(text))  # as encode_untrusted does
    return plain.decode(plain.encode(text, add_special_tokens=False).ids, skip_special_tokens=False)


def _check(tok, plain, texts):
    forbidden = special_ids(tok)
    altered = []
    for text, ids in zip(texts, encode_untrusted(tok, texts)):
        assert forbidden.isdisjoint(ids), f"{text!r} produced special ids {sorted(forbidden.intersection(ids))}"
        got = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if got != _reference(plain, text):
            altered.append((text, got, _reference(plain, text)))
    assert not altered, f"{len(altered)} of {len(texts)} texts altered, e.g. {altered[:5]}"


def _probes(tok) -> list[str]:
    specials = [*SPECIALS, "<|good|>", "<|bad|>", "▁</s>", "</s></s>", "<s></s>"]
    out = [f"{a}{s}{b}" for s in specials for a in NEIGHBOURS for b in NEIGHBOURS]
    out += [f"x {s} y {s}{s}z" for s in specials]
    return out + corpus(tok)


@pytest.mark.parametrize("name", NAMES)
def test_specials_are_reachable_so_the_repair_runs(metaspace_tokenizers, name):
    """The premise: without the repair these tokenizers do produce special ids from text."""
    tok, _ = metaspace_tokenizers[name]
    model = tok.backend_tokenizer.model
    assert {t.id for s in ("</s>", "<s>", "<pad>") for t in model.tokenize(s)} & special_ids(tok)


@pytest.mark.parametrize("name", NAMES)
def test_issue_example(metaspace_tokenizers, name):
    tok, plain = metaspace_tokenizers[name]
    [ids] = encode_untrusted(tok, ["é</s>é"])
    assert tok.decode(ids, skip_special_tokens=False) == _reference(plain, "é</s>é")
    assert special_ids(tok).isdisjoint(ids)


@pytest.mark.parametrize("name", NAMES)
def test_repair_keeps_meaning_on_probes(metaspace_tokenizers, name):
    tok, plain = metaspace_tokenizers[name]
    _check(tok, plain, _probes(tok))


FRAGMENTS = [*SPECIALS, "<|good|>", "<", ">", "/", "s", "▁", " ", "  ", "\n", "é", "a", "\ufffd", SELF, "<0x41>"]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=10)
                      .map("".join), min_size=1, max_size=4))
def test_property_repair_keeps_meaning(metaspace_tokenizers, name, texts):
    tok, plain = metaspace_tokenizers[name]
    _check(tok, plain, texts)


def test_repair_keeps_wordpiece_continuations():
    """WordPiece: the characters after the first are its "##" continuation pieces, so the decoded text has no
    spaces inside the former special."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["[UNK]", "[SEP]", "##[SEP]", "x", "[", "S", "E", "P", "]"]
    vocab = {p: i for i, p in enumerate([*pieces, *(f"##{c}" for c in "[SEP]x")])}
    bk = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    bk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bk.decoder = decoders.WordPiece()
    tok = PreTrainedTokenizerFast(tokenizer_object=bk, unk_token="[UNK]", sep_token="[SEP]")
    assert bk.encode("[SEP] x[SEP]").ids == [1, 3, 2]  # the model reaches the special's text
    texts = ["[SEP]", "x[SEP]", "[SEP] x[SEP]x"]
    out = encode_untrusted(tok, texts)
    assert special_ids(tok).isdisjoint(i for ids in out for i in ids)
    assert [tok.decode(ids) for ids in out] == texts


def test_repair_keeps_end_of_word_suffixes():
    """BPE with an end-of-word suffix (CLIP's "</w>"): the characters keep the word's end where it was."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [*"<|x>"]
    vocab = {p: i for i, p in enumerate(["<unk>", *chars, *(f"{c}</w>" for c in chars), "<|", "<|x", "<|x></w>"])}
    merges = [("<", "|"), ("<|", "x"), ("<|x", "></w>")]
    bk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", end_of_word_suffix="</w>"))
    bk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bk.decoder = decoders.BPEDecoder(suffix="</w>")
    tok = PreTrainedTokenizerFast(tokenizer_object=bk, unk_token="<unk>", eos_token="<|x></w>")
    assert bk.encode("<|x>").ids == [vocab["<|x></w>"]]  # the model reaches the special's text
    texts = ["<|x>", "x <|x> x"]
    out = encode_untrusted(tok, texts)
    assert special_ids(tok).isdisjoint(i for ids in out for i in ids)
    assert [tok.decode(ids) for ids in out] == texts
