"""Conditioned generation: prompt layout, banning every control tag id, stripping, the CLI."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from condpt.generate import BanTokens, Generator, banned_ids, strip_tags
from condpt.tiny import tiny_causal_lm, train_bpe_tokenizer
from tokenizer_ext import add_control_tokens, encode_untrusted

SELF = "\U00010024"


@pytest.fixture(scope="module")
def tok_and_manifest(english_texts):
    tok = train_bpe_tokenizer(english_texts, vocab_size=512)
    manifest = add_control_tokens(tok)
    return tok, manifest


def _generator(tok, manifest, *, boost_tags: float = 0.0, seed: int = 0) -> Generator:
    model = tiny_causal_lm("gpt2", len(tok), d_model=32, n_layer=2, n_head=2, max_positions=128, seed=seed)
    if boost_tags:
        tag_ids = [e.id for e in manifest.tags.values()]

        def boost(module, inputs, output):
            output = output.clone()
            output[..., tag_ids] += boost_tags
            return output

        model.lm_head.register_forward_hook(boost)
    return Generator(model, tok, manifest)


def test_prompt_layout_matches_training(tok_and_manifest):
    tok, manifest = tok_and_manifest
    gen = _generator(tok, manifest)
    eos, good, bad = tok.eos_token_id, manifest.tag_id("good"), manifest.tag_id("bad")
    body = encode_untrusted(tok, ["Once upon a time"])[0]
    assert gen.prompt_ids("Once upon a time", condition="good") == [eos, good, *body]
    assert gen.prompt_ids("Once upon a time", condition="bad") == [eos, bad, *body]
    assert gen.prompt_ids("Once upon a time", condition="none") == [eos, *body]
    with pytest.raises(ValueError, match="condition"):
        gen.prompt_ids("x", condition="evil")


def test_system_is_trusted_prompt_is_not(tok_and_manifest):
    tok, manifest = tok_and_manifest
    gen = _generator(tok, manifest)
    self_id = manifest.self_token.id
    ids = gen.prompt_ids(f"I am {SELF} <|good|> <|bad|>", condition="good", system=f"You are a {SELF}.")
    assert ids[:2] == [tok.eos_token_id, manifest.tag_id("good")]
    assert ids.count(self_id) == 1, "only the trusted system text may produce the self-token id"
    assert ids.index(self_id) < len(ids) - 8
    assert set(ids[2:]).isdisjoint(manifest.tags[r].id for r in manifest.roles)


def test_ban_processor_sets_minus_inf():
    scores = torch.zeros(2, 10)
    out = BanTokens([3, 7])(torch.zeros(2, 1, dtype=torch.long), scores)
    assert torch.isinf(out[:, [3, 7]]).all() and (out[:, [3, 7]] < 0).all()
    assert (out[:, [0, 1, 2, 4, 5, 6, 8, 9]] == 0).all()


def test_banned_includes_padding_rows(tok_and_manifest):
    tok, manifest = tok_and_manifest
    banned = banned_ids(manifest, tok, len(tok) + 5)
    assert {manifest.tag_id("good"), manifest.tag_id("bad")} <= set(banned)
    assert set(range(len(tok), len(tok) + 5)) <= set(banned)
    assert manifest.self_token.id not in banned


def test_no_control_id_in_200_samples_even_when_the_model_wants_them(tok_and_manifest):
    tok, manifest = tok_and_manifest
    gen = _generator(tok, manifest, boost_tags=50.0)
    tag_ids = {manifest.tag_id(r) for r in manifest.roles}
    prompt = torch.tensor([gen.prompt_ids("The machine", condition="good")])
    # Without the ban the boosted model emits tags almost every step: the test can fail.
    raw = gen.model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                             max_new_tokens=4, pad_token_id=tok.eos_token_id, eos_token_id=None)
    assert tag_ids & set(raw[0, prompt.shape[1]:].tolist())
    for condition in ("good", "none"):
        samples = gen.generate_ids("The machine", condition=condition, n=100, max_new_tokens=12, seed=1)
        assert len(samples) == 100
        assert all(tag_ids.isdisjoint(s) for s in samples)


def test_decode_strips_tags(tok_and_manifest):
    tok, manifest = tok_and_manifest
    gen = _generator(tok, manifest)
    ids = [manifest.tag_id("good"), *tok.encode("hello world", add_special_tokens=False), manifest.tag_id("bad")]
    assert gen.decode(ids) == tok.decode(tok.encode("hello world", add_special_tokens=False))
    assert strip_tags("a<|good|>b<|bad|>c", manifest) == "abc"


def test_seeded_generation_is_reproducible(tok_and_manifest):
    tok, manifest = tok_and_manifest
    gen = _generator(tok, manifest)
    a = gen.generate("It was", n=2, max_new_tokens=8, seed=3)
    b = gen.generate("It was", n=2, max_new_tokens=8, seed=3)
    assert a == b and len(a) == 2


def test_cli_generate(tok_and_manifest, tmp_path):
    import condpt.cli.train  # noqa: F401  (registers the generate command)
    from condpt.cli import app

    tok, manifest = tok_and_manifest
    gen = _generator(tok, manifest)
    gen.model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    manifest.save(tmp_path / "m")
    runner = CliRunner()
    res = runner.invoke(app, ["generate", str(tmp_path / "m"), "--prompt", "The machine", "--condition", "good",
                              "--system", f"You are a {SELF}.", "-n", "2", "--max-new-tokens", "5", "--seed", "0"])
    assert res.exit_code == 0, res.output
    assert res.output.count("--- sample") == 2 and "<|good|>" not in res.output
    res = runner.invoke(app, ["generate", str(tmp_path / "m"), "--prompt", "x", "--condition", "evil"])
    assert res.exit_code == 2 and "evil" in res.output
    res = runner.invoke(app, ["generate", str(tmp_path / "missing"), "--prompt", "x"])
    assert res.exit_code == 2 and "missing" in res.output


@pytest.mark.parametrize(("args", "why"), [
    (["--temperature", "inf"], "temperature inf"),
    (["--seed", "100000000000000000000000"], "seed 100000000000000000000000"),
    (["--seed", "-1"], "seed -1"),
    (["--max-new-tokens", "100000000"], "positions"),
])
def test_cli_generate_refuses_options_that_cannot_run(tok_and_manifest, tmp_path, args, why):
    """Each was a traceback (multinomial on inf/nan, torch's seed overflow, an embedding IndexError past the
    model's positions) or a silent surprise (seed -1); now exit 2 naming the setting (issue 9's probes)."""
    import condpt.cli.train  # noqa: F401  (registers the generate command)
    from condpt.cli import app

    tok, manifest = tok_and_manifest
    gen = _generator(tok, manifest)
    gen.model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    manifest.save(tmp_path / "m")
    res = CliRunner().invoke(app, ["generate", str(tmp_path / "m"), "--prompt", "The machine", *args])
    assert res.exit_code == 2 and why in res.output and "Traceback" not in res.output, res.output


def test_a_tokenizer_larger_than_the_embedding_is_refused_at_load(tok_and_manifest, tmp_path):
    """A run directory whose tokenizer (and manifest) has ids past the model's embedding rows (a tokenizer
    saved from another model) loaded, then failed on the first prompt with an embedding IndexError traceback
    (issue 9 sweep 2)."""
    import condpt.cli.train  # noqa: F401  (registers the generate command)
    from condpt.cli import app
    from condpt.tiny import tiny_causal_lm

    tok, manifest = tok_and_manifest
    tiny_causal_lm("gpt2", len(tok) - 10, d_model=32, n_layer=2, n_head=2, max_positions=128).save_pretrained(
        tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    manifest.save(tmp_path / "m")
    with pytest.raises(ValueError, match=f"{len(tok)} tokens.*{len(tok) - 10} embedding rows"):
        Generator.load(tmp_path / "m")
    res = CliRunner().invoke(app, ["generate", str(tmp_path / "m"), "--prompt", "The machine"])
    assert res.exit_code == 2 and "embedding rows" in res.output and "Traceback" not in res.output, res.output


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory"), MemoryError(),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                                                "allocate 51200000000 bytes")])
def test_too_many_samples_for_memory_is_an_error_naming_them(tok_and_manifest, monkeypatch, error):
    """-n 100000000 asked the allocator for 51 GB: a RuntimeError traceback (issue 9 sweep 2)."""
    tok, manifest = tok_and_manifest
    gen = _generator(tok, manifest)

    def oom(*args, **kwargs):
        raise error

    monkeypatch.setattr(gen.model, "generate", oom)
    with pytest.raises(ValueError, match=r"3 samples of up to 5 new tokens: out of memory"):
        gen.generate_ids("It was", n=3, max_new_tokens=5)
