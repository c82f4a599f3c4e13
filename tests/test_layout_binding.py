"""A run directory's model, tokenizer and manifest must belong together (`condpt.layout.load_run`,
`tokenizer_ext.binding`): a tokenizer and manifest copied from another model used to load (every id had a row)
and generate garbage with exit status 0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from condpt.layout import load_run
from condpt.tiny import tiny_causal_lm, train_bpe_tokenizer
from tokenizer_ext import MANIFEST_NAME, ControlTokenError, Manifest
from tokenizer_ext.binding import BINDING_KEY
from tokenizer_ext.resize import add_tokens_to_checkpoint


def _checkpoint(path: Path, texts: list[str], vocab: int) -> Path:
    tok = train_bpe_tokenizer(texts, vocab_size=vocab)
    model = tiny_causal_lm("gpt2", len(tok), d_model=16, n_layer=1, n_head=2, max_positions=64,
                           eos_token_id=tok.eos_token_id)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, english_texts) -> dict[str, Path]:
    """add-tokens outputs (vocabulary padded to 64): `small` and `large` from tokenizers of 300 and 500 tokens,
    `twin` from a tokenizer of `small`'s size trained on other texts."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, texts, vocab in [("small", english_texts, 300), ("large", english_texts, 500),
                               ("twin", english_texts[::-1][:20], 300)]:
        out[name] = root / name
        add_tokens_to_checkpoint(_checkpoint(root / f"{name}-base", texts, vocab), out[name])
    return out


def _swap_tokenizer(src: Path, dst: Path, tmp_path: Path) -> Path:
    """A copy of `dst` holding `src`'s tokenizer files and manifest (what a careless copy does)."""
    target = tmp_path / f"{dst.name}-with-{src.name}-tokenizer"
    shutil.copytree(dst, target)
    for f in src.iterdir():
        if f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", MANIFEST_NAME):
            shutil.copyfile(f, target / f.name)
    return target


def test_padded_add_tokens_output_loads_and_records_its_tokenizer(runs):
    config = json.loads((runs["small"] / "config.json").read_text())
    run = load_run(runs["small"], device="cpu")
    rows = run.model.get_input_embeddings().num_embeddings
    assert rows % 64 == 0 and rows > len(run.tokenizer)
    assert config[BINDING_KEY]["tokenizer_size"] == len(run.tokenizer)
    assert config[BINDING_KEY]["tags"] == {r: e.id for r, e in run.manifest.tags.items()}


def test_tokenizer_from_a_smaller_model_is_refused(runs, tmp_path):
    mixed = _swap_tokenizer(runs["small"], runs["large"], tmp_path)
    with pytest.raises(ControlTokenError, match=f"{mixed}.*tokenizer of \\d+ tokens.*another model"):
        load_run(mixed, device="cpu")


def test_tokenizer_of_the_same_size_from_another_model_is_refused(runs, tmp_path):
    small = load_run(runs["small"], device="cpu")
    twin = load_run(runs["twin"], device="cpu")
    assert len(small.tokenizer) == len(twin.tokenizer) and small.manifest == twin.manifest
    with pytest.raises(ControlTokenError, match="sha256"):
        load_run(_swap_tokenizer(runs["twin"], runs["small"], tmp_path), device="cpu")


def test_manifest_with_other_roles_or_missing_is_refused(runs, tmp_path):
    target = tmp_path / "swapped"
    shutil.copytree(runs["small"], target)
    m = Manifest.load(target)
    good, bad = m.tags["good"], m.tags["bad"]
    swapped = m.model_copy(update={"tags": {"good": bad, "bad": good}})
    (target / MANIFEST_NAME).write_text(json.dumps(swapped.model_dump(), ensure_ascii=False))
    with pytest.raises(ControlTokenError, match=f"{target}.*records tags"):
        load_run(target, device="cpu")
    (target / MANIFEST_NAME).unlink()
    with pytest.raises(ControlTokenError, match=f"no {MANIFEST_NAME}"):
        load_run(target, device="cpu")


def test_the_cli_refuses_with_exit_2_naming_the_directory(runs, tmp_path):
    import condpt.cli.evidence
    import condpt.cli.train  # noqa: F401  (register generate and eval)
    from condpt.cli import app

    mixed = _swap_tokenizer(runs["small"], runs["large"], tmp_path)
    for args in (["generate", str(mixed), "--prompt", "Once"], ["eval", str(mixed), "--per-split", "1"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, res.output
        assert str(mixed) in res.output and "another model" in res.output and "Traceback" not in res.output


def test_the_record_survives_a_plain_save_pretrained(runs, tmp_path):
    run = load_run(runs["small"], device="cpu")
    run.model.save_pretrained(tmp_path / "resaved")
    run.tokenizer.save_pretrained(tmp_path / "resaved")
    run.manifest.save(tmp_path / "resaved")
    assert BINDING_KEY in json.loads((tmp_path / "resaved" / "config.json").read_text())
    load_run(tmp_path / "resaved", device="cpu")
    mixed = _swap_tokenizer(runs["large"], tmp_path / "resaved", tmp_path)
    with pytest.raises(ControlTokenError, match="another model"):
        load_run(mixed, device="cpu")


def test_a_runs_export_records_its_tokenizer(tmp_path, english_texts):
    """`condpt.export.export` (OUTPUT_DIR/final) writes the record, so a tokenizer copied in later is refused."""
    from accelerate import Accelerator

    from condpt.config import load_config
    from condpt.export import export
    from tokenizer_ext import add_control_tokens

    tok = train_bpe_tokenizer(english_texts, vocab_size=300)
    manifest = add_control_tokens(tok)
    model = tiny_causal_lm("gpt2", len(tok) + 20, d_model=16, n_layer=1, n_head=2, max_positions=64)
    cfg = load_config(Path(__file__).resolve().parents[1] / "recipes" / "configs" / "tiny-cpu.yaml",
                      [f"output_dir={tmp_path}"])
    acc = Accelerator(cpu=True)
    final = export(acc, acc.prepare(model), tok, manifest, cfg, tmp_path / "run")
    assert json.loads((final / "config.json").read_text())[BINDING_KEY]["tokenizer_size"] == len(tok)
    assert load_run(final, device="cpu").manifest == manifest
    other = tmp_path / "other"
    _checkpoint(other, english_texts, 200)
    add_tokens_to_checkpoint(other, tmp_path / "other-tokens")
    with pytest.raises(ControlTokenError, match="another model"):
        load_run(_swap_tokenizer(tmp_path / "other-tokens", final, tmp_path), device="cpu")
