"""`export` writes a tied model's embedding once, as the model's own `save_pretrained` would, whichever way
accelerate gathered the state dict; the reload has the same logits and is still tied; untied models keep
both matrices; the routed export (`final/` ablated, `final-unablated/`) is held to the same.

The gathers are accelerate's, in one process: `Accelerator.get_state_dict` with `get_state_dict` swapped for
what its DeepSpeed branches return (ZeRO-2: `clone_tensors_for_torch_save`, a copy per name; ZeRO-3:
DeepSpeed's consolidated 16-bit dict, a shared parameter one tensor under each name, then cast to float32 by
the export). The 2-process runs in train/test_route.py check the same on real ZeRO-2/ZeRO-3 exports.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from condpt.tiny import tiny_causal_lm, train_bpe_tokenizer
from tokenizer_ext import add_control_tokens

REPO = Path(__file__).resolve().parents[1]
GATHERS = ("plain", "zero2", "zero3")


def _gathered(model, gather: str) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if gather == "zero2":  # accelerate: clone_tensors_for_torch_save(unwrap_model(model).state_dict())
        from deepspeed.checkpoint.utils import clone_tensors_for_torch_save

        return clone_tensors_for_torch_save(state)
    if gather == "zero3":  # DeepSpeed's _zero3_consolidated_16bit_state_dict: bf16, shared params kept shared
        cast: dict[int, torch.Tensor] = {}
        return {k: cast.setdefault(v.data_ptr(), v.detach().to(torch.bfloat16)) for k, v in state.items()}
    return state


def _accelerator(gather: str):
    from accelerate import Accelerator

    class Gathering(Accelerator):
        def get_state_dict(self, model, unwrap=True):
            return _gathered(self.unwrap_model(model), gather)

    return Gathering(cpu=True)


@pytest.fixture(scope="module")
def tok_manifest(english_texts):
    tok = train_bpe_tokenizer(english_texts, vocab_size=300)
    return tok, add_control_tokens(tok)


def _model(arch: str, tied: bool, vocab: int, gather: str):
    model = tiny_causal_lm(arch, vocab, d_model=32, n_layer=2, n_head=2, max_positions=64, tie_word_embeddings=tied)
    if gather == "zero3":  # weights a 16-bit gather carries exactly, so the reload can be compared bit for bit
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    return model


def _export(tmp_path: Path, gather: str, model, tok, manifest) -> Path:
    from condpt.config import load_config
    from condpt.export import export

    cfg = load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [f"output_dir={tmp_path}"])
    acc = _accelerator(gather)
    return export(acc, acc.prepare(model), tok, manifest, cfg, tmp_path)


def _keys(directory: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return set(f.keys())


def _same_files_as_save_pretrained(directory: Path, reference_model, tmp_path: Path) -> None:
    """One copy of a tied matrix: the keys and size the model's own `save_pretrained` writes."""
    ref = tmp_path / "reference"
    reference_model.save_pretrained(ref)
    assert _keys(directory) == _keys(ref)
    assert (directory / "model.safetensors").stat().st_size == (ref / "model.safetensors").stat().st_size


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits


@pytest.mark.parametrize("gather", GATHERS)
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_export_stores_a_tied_embedding_once_and_reloads_tied(tmp_path, tok_manifest, arch, tied, gather):
    from transformers import AutoModelForCausalLM

    tok, manifest = tok_manifest
    model = _model(arch, tied, len(tok), gather)
    head, emb = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert (head is emb) == tied
    final = _export(tmp_path / "run", gather, model, tok, manifest)
    _same_files_as_save_pretrained(final, model, tmp_path)
    n_matrices = len({n for n in _keys(final) if n.endswith(("embed_tokens.weight", "wte.weight", "lm_head.weight"))})
    assert n_matrices == (1 if tied else 2)

    reloaded = AutoModelForCausalLM.from_pretrained(str(final))
    assert reloaded.config.tie_word_embeddings == tied
    assert (reloaded.get_output_embeddings().weight is reloaded.get_input_embeddings().weight) == tied
    assert torch.equal(_logits(reloaded), _logits(model))


@pytest.mark.parametrize("gather", GATHERS)
def test_routed_export_stores_a_tied_embedding_once(tmp_path, tok_manifest, gather):
    from transformers import AutoModelForCausalLM

    from condpt.policy import RouteConfig
    from condpt.routing import ROUTED_WEIGHTS, expand, load_unablated

    tok, manifest = tok_manifest
    model = _model("llama", True, len(tok), gather)
    plain = copy.deepcopy(model)
    expand(model, RouteConfig(width=8, layers=[1]))
    with torch.no_grad():  # routed units that act, so the unablated reload is a different function
        model.model.layers[1].mlp.routed.down.weight.normal_(0.0, 0.5)
        if gather == "zero3":
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    final = _export(tmp_path / "run", gather, model, tok, manifest)
    _same_files_as_save_pretrained(final, plain, tmp_path / "ablated")
    unablated_dir = final.parent / "final-unablated"
    _same_files_as_save_pretrained(unablated_dir, plain, tmp_path / "unablated")
    assert (unablated_dir / ROUTED_WEIGHTS).is_file()

    ablated = AutoModelForCausalLM.from_pretrained(str(final))
    assert ablated.get_output_embeddings().weight is ablated.get_input_embeddings().weight
    assert torch.equal(_logits(ablated), _logits(plain))
    unablated = load_unablated(unablated_dir)
    assert unablated.get_output_embeddings().weight is unablated.get_input_embeddings().weight
    assert torch.equal(_logits(unablated), _logits(model))
    assert not torch.equal(_logits(unablated), _logits(plain))
