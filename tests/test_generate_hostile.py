"""`condpt generate` against hostile output and damaged run directories (issue 9's probe variants): a tag
string never survives decoding, whatever pieces the model emits around it; a damaged checkpoint and a
temperature that overflows the logits are an error naming them, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from condpt.generate import Generator, strip_tags
from condpt.tiny import tiny_causal_lm, train_bpe_tokenizer
from tokenizer_ext import add_control_tokens, encode_untrusted


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, english_texts):
    tok = train_bpe_tokenizer(english_texts, vocab_size=400)
    manifest = add_control_tokens(tok)
    model = tiny_causal_lm("gpt2", len(tok), d_model=32, n_layer=1, n_head=2, max_positions=64)
    directory = tmp_path_factory.mktemp("gen") / "m"
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    manifest.save(directory)
    return directory, Generator(model, tok, manifest)


@pytest.mark.parametrize("text", ["<|go<|bad|>od|>", "<<|good|>|good|>|good|>", "<|b<|good|>ad|>x<|ba<|bad|>d|>"])
def test_no_tag_string_survives_decoding_when_removing_one_forms_another(run_dir, text):
    """Ordinary tokens spelling '<|go' + '<|bad|>' + 'od|>' decoded to '<|good|>' once the inner tag was
    removed: strip_tags replaced each tag string once, in order."""
    _, gen = run_dir
    out = gen.decode(encode_untrusted(gen.tokenizer, [text])[0])
    assert not any(e.string in out for e in gen.manifest.tags.values()), out
    assert strip_tags(text, gen.manifest) == out


def _generate(directory, *args):
    import condpt.cli.train  # noqa: F401  (registers the generate command)
    from condpt.cli import app

    return CliRunner().invoke(app, ["generate", str(directory), "--prompt", "The robot", "--max-new-tokens", "4",
                                    *args])


@pytest.mark.parametrize(("name", "damage", "why"), [
    ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:1000]), "model.safetensors"),
    ("config.json", lambda p: p.write_text("[]"), "config.json"),
])
def test_a_damaged_checkpoint_is_an_error_naming_the_file(run_dir, tmp_path, name, damage, why):
    """A truncated safetensors file was a SafetensorError traceback, a config.json that is a JSON list a
    TypeError traceback (exit 1)."""
    import shutil

    directory = tmp_path / "m"
    shutil.copytree(run_dir[0], directory)
    damage(directory / name)
    res = _generate(directory)
    assert res.exit_code == 2 and why in res.output and "Traceback" not in res.output, (res.output, res.exception)


@pytest.mark.parametrize("temperature", ["1e-45", "1e-38", "1e-5"])
def test_a_temperature_that_can_overflow_the_logits_is_refused(run_dir, temperature):
    """Logits divided by a subnormal temperature are inf: a multinomial RuntimeError traceback (exit 1). Any
    temperature under 1e-4 is refused (it samples as greedy does, and can overflow): 0 means greedy."""
    res = _generate(run_dir[0], "--temperature", temperature, "--seed", "0")
    assert res.exit_code == 2 and f"temperature {float(temperature)}" in res.output, (res.output, res.exception)
