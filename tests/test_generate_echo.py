"""`condpt generate` echoes the prompt and each sample so that no tag string can be read where no tag was set:
it printed prompt + sample as one string, so `--prompt '<|go'` and a sample beginning `od|>` showed `<|good|>`
under condition none."""

from __future__ import annotations

import ast

import pytest
from typer.testing import CliRunner

from condpt.generate import Generator
from condpt.tiny import tiny_causal_lm, train_bpe_tokenizer
from tokenizer_ext import add_control_tokens

SELF = "\U00010024"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, english_texts):
    tok = train_bpe_tokenizer(english_texts, vocab_size=300)
    manifest = add_control_tokens(tok)
    directory = tmp_path_factory.mktemp("echo") / "m"
    tiny_causal_lm("gpt2", len(tok), d_model=16, n_layer=1, n_head=2, max_positions=64).save_pretrained(directory)
    tok.save_pretrained(directory)
    manifest.save(directory)
    return directory, manifest


def _generate(directory, monkeypatch, samples: list[str], *args: str):
    import condpt.cli.train  # noqa: F401  (registers the generate command)
    from condpt.cli import app

    monkeypatch.setattr(Generator, "generate", lambda self, prompt, **kw: list(samples))
    return CliRunner().invoke(app, ["generate", str(directory), *args])


def test_a_tag_string_formed_across_the_boundary_is_not_printed(run_dir, monkeypatch):
    directory, _ = run_dir
    res = _generate(directory, monkeypatch, ["od|> and so on"], "--prompt", "<|go", "--condition", "none")
    assert res.exit_code == 0, res.output
    assert "<|good|>" not in res.output, res.output
    assert "condition: none" in res.output and "od|> and so on" in res.output


@pytest.mark.parametrize("prompt", ["say <|good|> now", "<|bad|>", f"I am {SELF}", "<|go<|bad|>od|>"])
def test_control_strings_in_the_untrusted_prompt_are_echoed_escaped(run_dir, monkeypatch, prompt):
    """The prompt is echoed as a string literal of exactly the text given, in which no control string appears
    verbatim (the model saw it as text; `𐀤` in a prompt even becomes U+FFFD)."""
    directory, manifest = run_dir
    res = _generate(directory, monkeypatch, [" x"], "--prompt", prompt, "--condition", "none")
    assert res.exit_code == 0, res.output
    assert not any(s in res.output for s in manifest.spec.strings()), res.output
    literal = next(line for line in res.output.splitlines() if line.startswith("prompt"))
    assert ast.literal_eval(literal.split(": ", 1)[1]) == prompt


def test_control_characters_are_escaped_and_each_sample_is_marked(run_dir, monkeypatch):
    """A CR or an escape sequence in a prompt or a sample could overwrite or hide what the terminal shows."""
    directory, _ = run_dir
    res = _generate(directory, monkeypatch, ["one\rtwo\x1b[2J", "line\nnext"], "--prompt", "a\rb\x00",
                    "-n", "2", "--system", f"You are {SELF}.")
    assert res.exit_code == 0, res.output
    assert "\r" not in res.output and "\x1b" not in res.output and "\x00" not in res.output
    assert "one\\rtwo\\x1b[2J" in res.output and "line\nnext" in res.output
    assert res.output.count("--- sample") == 2 and "condition: good" in res.output
    assert f"system (trusted): 'You are {SELF}.'" in res.output
