"""Gradient routing on CPU: expansion is a no-op, masks, where gradients flow, ablation."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from condpt.policy import PolicyConfig, RouteConfig, apply_policy
from condpt.routing import (
    ROUTED,
    ablate,
    blocks,
    expand,
    load_unablated,
    route_mask,
    route_tokens,
    router_of,
    save_routed,
    split_state_dict,
)
from condpt.tiny import tiny_causal_lm

ARCHS = ["gpt2", "llama", "gpt_neox", "qwen2"]
VOCAB = 96


def model_for(arch: str, n_layer: int = 3):
    return tiny_causal_lm(arch, VOCAB, d_model=32, n_layer=n_layer, n_head=4, max_positions=64, seed=0)


def tokens(batch: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def perturb_routed(model, seed: int = 3) -> None:
    """Non-zero routed output weights (at init they are zero, and so is the gradient of the routed inputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if f".{ROUTED}." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def original_mlp_params(model, layers):
    bl = blocks(model)
    return {f"{i}:{n}": p for i in layers for n, p in bl[i].mlp.named_parameters() if not n.startswith(ROUTED)}


def routed_params(model):
    return {n: p for n, p in model.named_parameters() if f".{ROUTED}." in n}


def grads_after(model, ids, mask, position_ids=None, loss_mask=None):
    model.zero_grad(set_to_none=True)
    with route_tokens(router_of(model), mask):
        kw = {"position_ids": position_ids} if position_ids is not None else {}
        logits = model(input_ids=ids, use_cache=False, **kw).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1),
                                                 reduction="none").view(ids.shape[0], -1)
        if loss_mask is not None:
            loss = loss * loss_mask[:, :-1]  # by the position whose activations make the prediction
        loss.sum().backward()


def nonzero(p) -> bool:
    return p.grad is not None and bool(p.grad.abs().sum() > 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_expansion_is_a_no_op_at_init(arch):
    model = model_for(arch)
    ids = tokens()
    before = model(input_ids=ids).logits
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    router = expand(model, RouteConfig(width=8, layers=[0, -1]))
    assert router.layers == [0, 2]
    after = model(input_ids=ids).logits
    assert torch.equal(before, after)
    with route_tokens(router, torch.ones(ids.shape, dtype=torch.bool)):
        assert torch.equal(before, model(input_ids=ids).logits)  # routing changes gradients, never the forward
    base, routed = split_state_dict(model.state_dict())
    assert {k: v.shape for k, v in base.items()} == shapes
    assert routed and all(".mlp.routed." in k for k in routed)
    assert sum(v.shape[0] == 8 for k, v in routed.items() if k.endswith("up.weight")) == 2


def test_route_mask_from_tag_index():
    tag_index = torch.tensor([[0, 0, 1, 1, -1, 1], [-1, -1, 0, 0, 0, 0]])
    positions = torch.tensor([[5, 6, 7, 8, 9, 10], [3, 4, 5, 6, 7, 8]])  # one document per row segment, no boundary
    assert route_mask(tag_index, 1, positions).tolist() == [[False, False, True, True, False, True], [False] * 6]


def test_route_mask_gives_the_eos_between_documents_to_the_document_it_opens():
    """Packed [good doc, EOS, bad doc, EOS, good doc]: the EOS closing the good document (its tag_index, for the
    loss) is position 0 of the bad one, so it is routed; the EOS closing the bad document opens a good one and
    is not. A block that starts mid-document keeps the document's role at position 0."""
    eos = 0
    ids = [[7, 8, eos, 5, 6, eos, 9]]
    tag_index = torch.tensor([[0, 0, 0, 1, 1, 1, 0]])  # as pack_batch writes it: EOS closes under the role in effect
    from condpt.sequences import document_positions

    positions = torch.tensor([document_positions(ids[0], eos)])
    assert positions.tolist() == [[0, 1, 0, 1, 2, 0, 1]]
    assert route_mask(tag_index, 1, positions).tolist() == [[False, False, True, True, True, False, False]]
    mid = torch.tensor([[1, 1, 1, 0]])  # a bad document continued from the previous block, then a good one
    assert route_mask(mid, 1, torch.tensor([[0, 1, 2, 0]])).tolist() == [[True, True, True, False]]


def test_route_policy_keeps_tags_out_of_the_text_and_in_the_roles():
    batch = {"id": ["a", "b", "c"], "text": ["x", "y", "z"], "tag": ["bad", "good", "bad"], "score": [0.9, 0.1, 0.8]}
    cfg = PolicyConfig(mode="route")
    assert cfg.route == RouteConfig()
    train, aside = apply_policy(batch, cfg)
    assert aside["id"] == [] and [s[0]["role"] for s in train["segments"]] == ["bad", "good", "bad"]
    # missed bad documents are ordinary tokens: not routed
    train, _ = apply_policy(batch, PolicyConfig(mode="route", coverage=0.0))
    assert [s[0]["role"] for s in train["segments"]] == ["good", "good", "good"]


def test_route_config_is_checked():
    with pytest.raises(ValidationError, match="mode route"):
        PolicyConfig(mode="condition", route={"width": 8})
    for bad in ({"width": 0}, {"width": True}, {"layers": []}, {"layers": [1, 1]}, {"other_tokens": "ablate"},
                {"widht": 8}):
        with pytest.raises(ValidationError):
            RouteConfig.model_validate(bad)
    with pytest.raises(ValueError, match="route.layers: block 3 does not exist"):
        expand(model_for("gpt2"), RouteConfig(layers=[3]))


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_tokens_train_only_the_routed_units_of_a_routed_block(arch):
    model = model_for(arch).train()
    for m in model.modules():  # dropout off: exact zeros, not merely small gradients
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    expand(model, RouteConfig(width=8, layers=[1]))
    perturb_routed(model)
    ids = tokens()
    bad = torch.ones(ids.shape, dtype=torch.bool)
    grads_after(model, ids, bad)
    orig = original_mlp_params(model, [1])
    assert orig and all(p.grad is None or not nonzero(p) for p in orig.values())
    assert all(nonzero(p) for p in routed_params(model).values())
    # the rest of the model still learns from bad tokens (routing splits the routed blocks' MLPs only)
    assert all(nonzero(p) for p in original_mlp_params(model, [0]).values())


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("arch", ARCHS)
def test_train_setting_routes_bad_tokens_at_the_hidden_activations(arch, checkpointing):
    """`other_tokens: train` routes where the paper does (the MLP's hidden activations): on bad tokens the
    routed block's own units learn nothing on their input side, while its output projection (which reads the
    hidden activations) and the routed units learn; also when checkpointing re-runs the forward."""
    model = model_for(arch).train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    expand(model, RouteConfig(width=8, layers=[1], other_tokens="train"))
    perturb_routed(model)
    ids = tokens()
    grads_after(model, ids, torch.ones(ids.shape, dtype=torch.bool))
    orig = original_mlp_params(model, [1])
    out = {k for k in orig if k.split(":")[1].split(".")[0] in ("c_proj", "down_proj", "dense_4h_to_h")}
    assert out and all(nonzero(orig[k]) for k in out)
    assert len(orig) > len(out) and all(not nonzero(p) for k, p in orig.items() if k not in out)
    assert all(nonzero(p) for p in routed_params(model).values())


@pytest.mark.parametrize("other, routed_learn", [("off", False), ("train", True)])
def test_good_tokens_train_the_original_units_and_routed_ones_per_setting(other, routed_learn):
    model = model_for("llama").train()
    expand(model, RouteConfig(width=8, layers=[0, 2], other_tokens=other))
    perturb_routed(model)
    ids = tokens()
    grads_after(model, ids, torch.zeros(ids.shape, dtype=torch.bool))
    assert all(nonzero(p) for p in original_mlp_params(model, [0, 2]).values())
    assert all(nonzero(p) == routed_learn for p in routed_params(model).values())


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_mixed_packed_block_original_units_learn_only_from_good_documents(arch):
    """With document masking a packed block's bad document reaches the routed blocks' original units through
    nothing: their gradient from the whole block equals that from the good documents' tokens alone."""
    model = model_for(arch).train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    expand(model, RouteConfig(width=8, layers=[0, 1, 2]))
    perturb_routed(model)
    ids = tokens(batch=1, length=16)
    eos = 0
    ids[0, 0], ids[0, 6], ids[0, 11] = eos, eos, eos  # three documents: good [0:6], bad [6:11], good [11:16]
    from condpt.sequences import document_positions

    pos = torch.tensor([document_positions(ids[0].tolist(), eos)])
    bad = torch.zeros_like(ids, dtype=torch.bool)
    bad[0, 6:11] = True
    grads_after(model, ids, bad, position_ids=pos)
    whole = {k: p.grad.clone() for k, p in original_mlp_params(model, [0, 1, 2]).items()}
    grads_after(model, ids, bad, position_ids=pos, loss_mask=(~bad).float())
    good_only = {k: p.grad for k, p in original_mlp_params(model, [0, 1, 2]).items()}
    assert whole.keys() == good_only.keys()
    for k, grad in whole.items():
        torch.testing.assert_close(grad, good_only[k], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("arch", ARCHS)
def test_ablation_restores_the_original_shapes_and_equals_zeroed_routed_units(arch, tmp_path):
    from transformers import AutoModelForCausalLM

    model = model_for(arch)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    expand(model, RouteConfig(width=8))
    perturb_routed(model)
    ids = tokens()
    unablated = model(input_ids=ids).logits
    for n, p in routed_params(model).items():  # zero every routed output: the ablated function
        if n.endswith("down.weight"):
            p.data.zero_()
    zeroed = model(input_ids=ids).logits
    assert not torch.equal(zeroed, unablated)
    ablate(model)
    assert router_of(model) is None
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    torch.testing.assert_close(model(input_ids=ids).logits, zeroed, rtol=0, atol=1e-6)
    model.save_pretrained(tmp_path / "final")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "final").eval()
    assert {k: v.shape for k, v in loaded.state_dict().items()} == shapes
    torch.testing.assert_close(loaded(input_ids=ids).logits, zeroed, rtol=0, atol=1e-6)
    out = loaded.generate(ids[:1, :4], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)


def test_unablated_export_round_trip(tmp_path):
    model = model_for("qwen2")
    router = expand(model, RouteConfig(width=4, layers=[-1]))
    perturb_routed(model)
    ids = tokens()
    want = model(input_ids=ids).logits
    base, routed = split_state_dict(model.state_dict())
    model.save_pretrained(tmp_path / "u", state_dict=base)
    save_routed(tmp_path / "u", routed, router)
    back = load_unablated(tmp_path / "u")
    torch.testing.assert_close(back(input_ids=ids).logits, want, rtol=0, atol=1e-6)


def test_expanding_twice_or_ablating_a_plain_model_is_an_error():
    model = model_for("gpt2")
    with pytest.raises(ValueError, match="not expanded"):
        ablate(model)
    expand(model, RouteConfig(width=4))
    with pytest.raises(ValueError, match="already expanded"):
        expand(model, RouteConfig(width=4))


def test_mask_shape_must_match_the_activations():
    model = model_for("gpt2")
    router = expand(model, RouteConfig(width=4))
    with route_tokens(router, torch.zeros(1, 3, dtype=torch.bool)), pytest.raises(ValueError, match="route mask"):
        model(input_ids=tokens())
    assert router.mask is None  # cleared on the way out, even after an error


def test_route_blocks_have_no_tag_ids_but_roles_in_tag_index(tmp_path):
    import json

    from condpt.sequences import DataConfig, SourceConfig, build_datasets, tag_roles
    from condpt.tiny import gpt2_tokenizer
    from tokenizer_ext import ControlTokens, add_control_tokens

    tok = gpt2_tokenizer()
    manifest = add_control_tokens(tok, ControlTokens())
    rows = [{"id": f"d{i}", "text": f"Document number {i} says hello.", "tag": "bad" if i % 2 else "good"}
            for i in range(40)]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(sources=[SourceConfig(path=tmp_path / "s.jsonl")], block_size=32, heldout_fraction=0.0,
                     policy=PolicyConfig(mode="route"))
    train, _ = build_datasets(cfg, tok, manifest, seed=0)
    ids = [t for block in train["input_ids"] for t in block]
    assert not set(ids) & set(manifest.control_ids)
    roles = tag_roles(manifest)
    seen = {roles[i] for block in train["tag_index"] for i in block if i >= 0}
    assert seen == {"good", "bad"}
    assert all(i >= 0 for block in train["tag_index"] for i in block)  # every token has its document's role


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_routing_holds_under_gradient_checkpointing(arch):
    """Checkpointing re-runs each block's forward during backward: the mask must still be in force there."""
    model = model_for(arch).train()
    model.gradient_checkpointing_enable()
    expand(model, RouteConfig(width=8, layers=[1]))
    perturb_routed(model)
    ids = tokens()
    grads_after(model, ids, torch.ones(ids.shape, dtype=torch.bool))
    assert all(p.grad is None or not nonzero(p) for p in original_mlp_params(model, [1]).values())
    assert all(nonzero(p) for p in routed_params(model).values())


@pytest.mark.parametrize("other", ["off", "train"])
@pytest.mark.parametrize("arch", ARCHS)
def test_ablated_state_computes_and_trains_exactly_the_exported_ablated_model(arch, other, tmp_path):
    """The coherence fine-tune trains the expanded model in the ablated state: its logits (route mask or not)
    and its gradients are exactly those of the standard model `ablate` exports, and the routed units take part
    with zero gradient (under ZeRO no parameter may go unused)."""
    from transformers import AutoModelForCausalLM

    model = model_for(arch).eval()
    router = expand(model, RouteConfig(width=8, layers=[0, 2], other_tokens=other))
    perturb_routed(model)
    ids = tokens()
    bad = torch.zeros_like(ids, dtype=torch.bool)
    bad[0, 3:9] = True
    with route_tokens(router, bad):
        routed_logits = model(input_ids=ids).logits
    router.ablated = True
    with route_tokens(router, bad):
        masked = model(input_ids=ids).logits
    unmasked = model(input_ids=ids).logits
    grads_after(model, ids, bad)
    grads = {n: p.grad for n, p in model.named_parameters()}
    base, _ = split_state_dict(model.state_dict())
    model.save_pretrained(tmp_path / "a", state_dict=base)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "a").eval()
    want = exported(input_ids=ids).logits
    assert not torch.equal(routed_logits, want)  # the routed units mattered
    assert torch.equal(masked, want) and torch.equal(unmasked, want)
    grads_after(exported, ids, None)
    plain = {n: p.grad for n, p in exported.named_parameters()}
    assert plain.keys() == {k for k in grads if f".{ROUTED}." not in k}
    for k, g in plain.items():
        torch.testing.assert_close(grads[k], g, rtol=1e-6, atol=1e-8)
    routed_grads = [g for k, g in grads.items() if f".{ROUTED}." in k]
    assert routed_grads and all(g is not None and not g.any() for g in routed_grads)


def test_good_targets_are_labelled_targets_of_documents_not_tagged_bad():
    from condpt.routing import good_targets

    labels = torch.tensor([[5, 5, -100, 5, 5, 5]])
    tag_index = torch.tensor([[0, 0, 1, 1, -1, 1]])  # targets 1..5: good, masked, bad, untagged, bad
    assert good_targets(labels, tag_index, bad_index=1).tolist() == [[True, False, False, True, False]]


def test_coherence_is_off_by_default_and_takes_the_papers_values_when_on():
    from condpt.policy import Coherence

    assert RouteConfig().coherence is None
    on = RouteConfig(coherence={})
    assert on.coherence == Coherence(steps=40, lr_scale=0.1)
    for bad in ({"steps": 0}, {"lr_scale": 0.0}, {"lr_scale": 2.0}, {"steps": 4, "lr": 1e-5}):
        with pytest.raises(ValidationError):
            RouteConfig(coherence=bad)
