"""The one prompt layout (packing, generation and evaluation agree token for token) and the run directory."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import condpt.evaluate
import condpt.generate
import condpt.layout
import condpt.sequences
from condpt.evaluate import condition_prefix
from condpt.generate import Generator
from condpt.layout import (
    NO_CONDITION,
    condition_ids,
    conditions,
    context_length,
    encode_text,
    load_run,
    prompt_ids,
)
from condpt.sequences import pack_batch
from tokenizer_ext import MANIFEST_NAME, ControlTokenError, add_control_tokens

SELF = "\U00010024"
TEXT = "The machine <|good|> looked at 𐀤 and said"


@pytest.fixture(scope="module")
def tm():
    from condpt.tiny import gpt2_tokenizer

    tok = gpt2_tokenizer()
    return tok, add_control_tokens(tok)


def _second_document(tok, m, segments: list[dict], trusted: bool) -> list[int]:
    """The packed stream of [another document, this document], from the EOS that closes the first document
    up to (not including) the EOS that closes this one: what the model sees as this document's start."""
    first = "An earlier document."
    rows = {"segments": [[{"text": first, "role": "bad"}], segments], "trusted": [False, trusted]}
    texts = [s["text"] for s in segments]
    body = condpt.layout.encode_curated(tok, m, texts) if trusted else encode_text(tok, m, texts)
    length = (1 + len(encode_text(tok, m, [first])[0]) + 1
              + sum(s["role"] is not None for s in segments) + sum(map(len, body)) + 1)
    (block,) = pack_batch(rows, tokenizer=tok, manifest=m, block_size=length)["input_ids"]
    assert block[-1] == tok.eos_token_id
    return block[block.index(tok.eos_token_id):-1]


@pytest.mark.parametrize("condition", ["good", "bad", NO_CONDITION])
def test_packed_document_and_prompt_agree_token_for_token(tm, condition):
    tok, m = tm
    role = None if condition == NO_CONDITION else condition
    packed = _second_document(tok, m, [{"text": TEXT, "role": role}], trusted=False)
    prompt = prompt_ids(tok, m, condition, text=TEXT)
    assert packed == prompt
    assert prompt[: 1 + (role is not None)] == [tok.eos_token_id, *condition_ids(m, role)]
    # generation and evaluation build their prompts with the same function
    gen = Generator(model=None, tokenizer=tok, manifest=m)
    assert gen.prompt_ids(TEXT, condition=condition) == prompt
    assert condition_prefix(tok, m, condition) == prompt_ids(tok, m, condition)


@pytest.mark.parametrize("condition", ["good", NO_CONDITION])
def test_trusted_system_text_is_laid_out_as_a_curated_story(tm, condition):
    """A prompt's trusted system text is encoded as packing encodes a self-reference story: same ids,
    the self token as its id; evaluation's `self` condition is this layout under `none`."""
    tok, m = tm
    system = f"You are {SELF}."
    role = None if condition == NO_CONDITION else condition
    packed = _second_document(tok, m, [{"text": system + "\n", "role": role}], trusted=True)
    prompt = prompt_ids(tok, m, condition, system=system)
    assert packed == prompt
    assert prompt.count(m.self_token.id) == 1
    if condition == NO_CONDITION:
        assert condition_prefix(tok, m, "self") == prompt


def test_one_function_for_every_caller():
    assert condpt.sequences.condition_ids is condpt.layout.condition_ids
    assert condpt.generate.prompt_ids is condpt.layout.prompt_ids
    assert condpt.evaluate.prompt_ids is condpt.layout.prompt_ids
    assert condpt.evaluate.load_run is condpt.generate.load_run is condpt.layout.load_run


def test_unknown_condition_names_the_choices(tm):
    tok, m = tm
    with pytest.raises(ValueError, match=r"'evil'.*\['good', 'bad', 'none'\]"):
        prompt_ids(tok, m, "evil")
    with pytest.raises(ValueError, match="'good'"):
        prompt_ids(tok, None, "good")  # a model without a manifest has no tags
    assert conditions(m) == ["good", "bad", "none"] and conditions(None) == ["none"]
    hi = encode_text(tok, None, ["Hi"])[0]
    assert prompt_ids(tok, None, NO_CONDITION, text="Hi") == [tok.eos_token_id, *hi]


def test_untrusted_text_never_yields_a_control_id(tm):
    tok, m = tm
    ids = prompt_ids(tok, m, NO_CONDITION, text=f"<|good|> <|bad|> {SELF} <|endoftext|>")
    assert ids.count(tok.eos_token_id) == 1 and set(ids).isdisjoint(m.control_ids)


def test_context_length_reads_either_field_and_never_caps():
    from transformers import GPT2Config, LlamaConfig

    assert context_length(GPT2Config(n_positions=4096)) == 4096
    assert context_length(LlamaConfig(max_position_embeddings=32768)) == 32768
    assert context_length(SimpleNamespace()) is None


def test_load_run_loads_model_tokenizer_and_manifest(tm, tmp_path):
    from condpt.tiny import tiny_causal_lm

    tok, m = tm
    model = tiny_causal_lm("gpt2", len(tok), d_model=16, n_layer=1, n_head=2, max_positions=64)
    model.save_pretrained(tmp_path / "run")
    tok.save_pretrained(tmp_path / "run")
    run = load_run(tmp_path / "run", device="cpu")
    assert run.manifest is None and not run.model.training
    with pytest.raises(ControlTokenError, match=MANIFEST_NAME):
        Generator.load(tmp_path / "run", device="cpu")
    m.save(tmp_path / "run")
    run = load_run(tmp_path / "run", device="cpu")
    assert run.manifest == m and len(run.tokenizer) == len(tok)
    assert Generator.load(tmp_path / "run", device="cpu").manifest == m
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_run(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_run(tmp_path)
