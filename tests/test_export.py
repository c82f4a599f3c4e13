"""The exported `final/` protects plain Hugging Face users: its generation_config.json bans every control id
(and the vocabulary-padding rows), so `AutoModelForCausalLM` + a plain `generate` from EOS never emits one,
even from a model that wants them; condpt's own `Generator` still bans the tags and lets the self token through."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from condpt.export import protect_plain_generation
from condpt.generate import Generator
from condpt.tiny import tiny_causal_lm, train_bpe_tokenizer
from tokenizer_ext import add_control_tokens

REPO = Path(__file__).resolve().parents[1]
PADDED = 64  # rows past the tokenizer, as `model.vocab_multiple` leaves them


@pytest.fixture(scope="module")
def eager_model_dir(tmp_path_factory, english_texts):
    """A saved tiny model that puts nearly all its probability on the control ids and the padding rows."""
    tok = train_bpe_tokenizer(english_texts, vocab_size=400)
    manifest = add_control_tokens(tok)
    model = tiny_causal_lm("gpt2", len(tok) + PADDED, d_model=32, n_layer=1, n_head=2, max_positions=64)
    unwanted = [*manifest.control_ids, *range(len(tok), len(tok) + PADDED)]
    with torch.no_grad():  # every position's hidden state becomes v; the unwanted rows align with v (tied head)
        v = torch.randn(32)
        v /= v.norm()
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(v)
        wte = model.get_input_embeddings().weight
        wte.mul_(0.1)
        wte[unwanted] = 12.0 * v
    banned = protect_plain_generation(model, tok, manifest)
    directory = tmp_path_factory.mktemp("export") / "final"
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    manifest.save(directory)
    return directory, tok, manifest, banned


def _plain_samples(model, eos: int, **kwargs) -> list[list[int]]:
    prompt = torch.tensor([[eos]])
    torch.manual_seed(0)
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, **kwargs)
    return out[:, 1:].tolist()


def test_generation_config_lists_every_control_id_and_padding_row(eager_model_dir):
    directory, tok, manifest, banned = eager_model_dir
    listed = json.loads((directory / "generation_config.json").read_text())["suppress_tokens"]
    assert listed == banned
    assert set(manifest.control_ids) | set(range(len(tok), len(tok) + PADDED)) == set(listed)
    assert manifest.self_token.id in listed and {manifest.tag_id(r) for r in manifest.roles} <= set(listed)


def test_plain_generate_from_eos_never_emits_a_control_id(eager_model_dir):
    from transformers import AutoModelForCausalLM

    directory, tok, manifest, _ = eager_model_dir
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    eos, unwanted = tok.eos_token_id, set(manifest.control_ids) | set(range(len(tok), len(tok) + PADDED))
    # what the ban is for: the same model without it emits them at almost every step
    raw = _plain_samples(model, eos, do_sample=True, num_return_sequences=4, suppress_tokens=None)
    assert sum(t in unwanted for s in raw for t in s) > len(raw) * 6
    sampled = _plain_samples(model, eos, do_sample=True, num_return_sequences=200)
    greedy = _plain_samples(model, eos, do_sample=False)
    assert len(sampled) == 200 and all(unwanted.isdisjoint(s) for s in [*sampled, *greedy])


def test_generator_bans_the_tags_and_keeps_the_self_token_allowed(eager_model_dir):
    directory, tok, manifest, _ = eager_model_dir
    gen = Generator.load(directory, device="cpu")
    tag_ids = {manifest.tag_id(r) for r in manifest.roles}
    samples = [i for s in gen.generate_ids("The machine", condition="good", n=50, max_new_tokens=8, seed=0) for i in s]
    assert tag_ids.isdisjoint(samples) and all(i < len(tok) for i in samples)
    # the model wants the self token (one of the rows it prefers): condpt's Generator leaves it to the model
    assert manifest.self_token.id in samples


def test_finished_run_is_recognised_only_for_the_same_config(tmp_path):
    from condpt.config import load_config
    from condpt.export import finished

    cfg = load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [f"output_dir={tmp_path}"])
    assert not finished(tmp_path, cfg)
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "run_config.yaml").write_text(cfg.to_yaml())
    (tmp_path / "final" / "trainer_state.json").write_text(json.dumps({"step": cfg.train.max_steps}))
    assert finished(tmp_path, cfg)
    longer = load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [f"output_dir={tmp_path}", "train.max_steps=99"])
    assert not finished(tmp_path, longer)


def test_a_finished_run_stays_finished_when_condpt_adds_a_setting(tmp_path):
    """A run finished by an older condpt (its run_config.yaml lacks a setting added since, here route.coherence)
    is still finished for the same config: rerunning it must not train it again."""
    import yaml

    from condpt.config import load_config
    from condpt.export import finished

    cfg = load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml",
                      [f"output_dir={tmp_path}", "data.policy.mode=route", "data.policy.route={}"])
    older = yaml.safe_load(cfg.to_yaml())
    del older["data"]["policy"]["route"]["coherence"]
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "run_config.yaml").write_text(yaml.safe_dump(older, sort_keys=False))
    (tmp_path / "final" / "trainer_state.json").write_text(json.dumps({"step": cfg.train.max_steps}))
    assert finished(tmp_path, cfg)
    (tmp_path / "final" / "run_config.yaml").write_text("seed: [not, a, seed]\n")
    assert not finished(tmp_path, cfg)
