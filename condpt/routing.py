"""Gradient routing (Cloud et al. 2024, "Gradient routing"): expand, route, ablate.

- **Expand** (`expand`): the MLP of each chosen block gains `width` hidden units, as a submodule ``routed``
  of the MLP (same input, same activation and gating as the MLP's own units; GPT-2, Llama, Qwen2 and
  GPT-NeoX blocks). Their output weights start at zero, so the model computes exactly the same function at
  step 0, from scratch or from a checkpoint. The original parameters keep their names and shapes.
- **Route** (`Router`, `route_mask`): a forward hook on each expanded MLP adds the routed units' output to
  the MLP's. Which tokens the routed units see is `other_tokens`: ``off`` (they act and learn on the tokens
  of documents tagged bad only, the route mask from the packed block's `tag_index`; there the MLP's own
  output enters as ``out.detach()``, so only the routed units learn from bad text, and the ablated model
  computes on good tokens exactly what training optimised) or ``train`` (they act and learn on every token,
  as in the paper, so they can absorb bad documents the tagger missed; on bad tokens the MLP's own *hidden
  activations* enter its output projection detached, where the paper routes, so its own units learn
  nothing from bad text on their input side while its output projection learns from every token). A
  plain forward (no mask: held-out generation with `load_unablated`) runs the routed units on every token.
  The masks act on activations, never on ``param.grad``, so the same code runs under DeepSpeed ZeRO-2 and
  ZeRO-3 (where a parameter's gradient is a partitioned flat buffer).
  The mask is per token and the MLP is per token, so it composes with document masking unchanged.
- **Coherence** (`Router.ablated`, `good_targets`): after the main steps the router can be switched to the
  ablated state, in which the routed units' output is zeroed (they stay in the model, so nothing changes
  shape under ZeRO-3): the model computes exactly what `ablate` leaves. The training loop then fine-tunes it
  on the tokens of documents not tagged bad (the paper's coherence fine-tune; `condpt.train`).
- **Ablate** (`ablate`, `split_state_dict`): the routed units removed; what is left is the standard
  Hugging Face model with its original shapes (`AutoModelForCausalLM` loads it). `save_routed` /
  `load_unablated` keep the routed units beside such a checkpoint for research.

What routing does *not* stop: on bad tokens, the attention layers, the embeddings, the MLPs of blocks that
are not routed and everything after the routed blocks (final norm, LM head) still learn, as in any training
step; only the routed blocks' MLPs are split. Choose `layers` accordingly (the paper routes MLPs of several
blocks). Missed labels are ordinary (good) tokens and train the MLPs' own units: whether the routed units
absorb the behaviour anyway is the experiment's question, not an assumption here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from condpt.policy import RouteConfig

ROUTED = "routed"  # the submodule of each expanded MLP that holds the routed units
ROUTED_WEIGHTS = "routed.safetensors"
ROUTE_FILE = "route.json"


class RoutedUnits(nn.Module):
    """`width` extra hidden units of an MLP: ``down(act(up(x)))``, gated ``down(act(gate(x)) * up(x))``."""

    def __init__(self, d_model: int, width: int, act: nn.Module, *, gated: bool, bias: bool, dropout: float,
                 init_std: float):
        super().__init__()
        self.up = nn.Linear(d_model, width, bias=bias)
        self.gate = nn.Linear(d_model, width, bias=bias) if gated else None
        self.down = nn.Linear(width, d_model, bias=False)
        self.act = act
        self.dropout = nn.Dropout(dropout)
        with torch.no_grad():
            for lin in (self.up, self.gate):
                if lin is not None:
                    lin.weight.normal_(0.0, init_std)
                    if lin.bias is not None:
                        lin.bias.zero_()
            self.down.weight.zero_()  # the function is unchanged until the routed units learn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.gate(x)) * self.up(x) if self.gate is not None else self.act(self.up(x))
        return self.dropout(self.down(h))


@dataclass(frozen=True)
class Anatomy:
    """What a routed unit copies from the MLP it extends."""

    d_model: int
    act: nn.Module
    gated: bool
    bias: bool
    dropout: float
    down: nn.Module  # the MLP's output projection: its input is the hidden activations (the paper's hook_post)


def _anatomy(mlp: nn.Module) -> Anatomy:
    """The MLP's input width, activation, gating, bias, output dropout and output projection (GPT-2,
    Llama/Qwen2, GPT-NeoX)."""
    if hasattr(mlp, "gate_proj") and hasattr(mlp, "up_proj"):  # Llama, Qwen2, Mistral, ...
        return Anatomy(mlp.up_proj.in_features, mlp.act_fn, True, mlp.up_proj.bias is not None, 0.0, mlp.down_proj)
    if hasattr(mlp, "c_fc") and hasattr(mlp, "c_proj"):  # GPT-2 (Conv1D: weight is [in, out])
        drop = mlp.dropout.p if isinstance(getattr(mlp, "dropout", None), nn.Dropout) else 0.0
        return Anatomy(mlp.c_fc.weight.shape[0], mlp.act, False, mlp.c_fc.bias is not None, drop, mlp.c_proj)
    if hasattr(mlp, "dense_h_to_4h"):  # GPT-NeoX
        return Anatomy(mlp.dense_h_to_4h.in_features, mlp.act, False, mlp.dense_h_to_4h.bias is not None, 0.0,
                       mlp.dense_4h_to_h)
    raise ValueError(f"gradient routing: unsupported MLP {type(mlp).__name__} (supported: GPT-2, Llama, Qwen2, "
                     "GPT-NeoX blocks)")


def blocks(model: nn.Module) -> nn.ModuleList:
    """The model's transformer blocks (the ModuleList of `config.num_hidden_layers` modules with an `.mlp`)."""
    n = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and all(hasattr(b, "mlp") for b in module):
            return module
    raise ValueError(f"gradient routing: no list of {n} blocks with an .mlp in {type(model).__name__}")


def resolve_layers(layers: list[int] | None, n_blocks: int) -> list[int]:
    """Block indices (negative from the end), checked and sorted; None: every block."""
    if layers is None:
        return list(range(n_blocks))
    out = []
    for i in layers:
        if not -n_blocks <= i < n_blocks:
            raise ValueError(f"data.policy.route.layers: block {i} does not exist (the model has {n_blocks} blocks)")
        out.append(i % n_blocks)
    if len(set(out)) != len(out):
        raise ValueError(f"data.policy.route.layers: {layers} names a block twice")
    return sorted(out)


@dataclass
class Router:
    """The route state of an expanded model: which blocks, and the current per-token route mask (True: a token of
    a bad-tagged document; None: no routing, a plain forward)."""

    layers: list[int]
    width: int
    other_tokens: str
    mask: torch.Tensor | None = None
    ablated: bool = False  # the routed units contribute nothing: the function of the ablated model
    handles: list[Any] = field(default_factory=list, repr=False)

    def _bad(self, activations: torch.Tensor) -> torch.Tensor:
        if self.mask.shape != activations.shape[:-1]:
            raise ValueError(f"route mask of shape {tuple(self.mask.shape)} for activations of shape "
                             f"{tuple(activations.shape)}")
        return self.mask.to(activations.device).unsqueeze(-1)

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        routed = getattr(module, ROUTED)(args[0])
        if self.ablated:
            # Zeroed, not skipped: the routed parameters still take part in forward and backward (with zero
            # gradient), as in the main phase, so ZeRO sees no unused parameter. x + 0·y == x exactly.
            return output + routed * 0
        if self.mask is None or self.other_tokens == "train":
            return output + routed
        # The routed units act only where they learn. Acting on tokens they cannot learn from (the former
        # `detach`) starts a tug-of-war: on shared features the MLP's own units (trained on good tokens
        # only) and the routed units (bad tokens only) get persistent opposite gradients, Adam turns them
        # into drift at full learning rate, both outputs grow ~100x cancelling each other and the model
        # stalls at unigram loss (tests/test_route_learns.py).
        return torch.where(self._bad(output), output.detach() + routed, output)

    def hidden_hook(self, module: nn.Module, args: tuple) -> tuple | None:
        """`train`: on bad tokens the MLP's own hidden activations enter its output projection detached.

        This is where the paper routes (kxcloud/gradient-routing: masklib.py `_create_masking_hook` at the
        hook model_expansion.py `get_hook_name_from_model_part("d_mlp")` names, `mlp.hook_post`), so the output
        projection still learns from every token. Detaching the whole MLP output on bad tokens instead (as
        `off` does) while the routed units also act and learn on good tokens is a tug-of-war between the two
        output projections: both outputs grew ~10x and good-token loss stalled, in tests/test_route_learns.py
        1.99 vs plain training's 1.64 (GPT-2; tiny Llama, 3 seeds: +0.40 to +0.88), here 1.56 (Llama: +0.03
        to +0.12). The paper's L1 penalty on the hidden activations did not cure the output-level version
        (coefficients 1e-4 to 1: 1.95-2.41)."""
        if self.mask is None or self.ablated:
            return None
        h = args[0]
        return (torch.where(self._bad(h), h.detach(), h), *args[1:])

    def config(self) -> dict[str, Any]:
        return {"layers": self.layers, "width": self.width, "other_tokens": self.other_tokens}


def expand(model: nn.Module, cfg: RouteConfig) -> Router:
    """Add the routed units to the chosen blocks' MLPs and hook them (in place); returns the router, also at
    `model.condpt_router`. Call before wrapping the model (accelerate / DeepSpeed)."""
    if router_of(model) is not None:
        raise ValueError("the model is already expanded for gradient routing")
    mlps = [b.mlp for b in blocks(model)]
    layers = resolve_layers(cfg.layers, len(mlps))
    std = float(getattr(model.config, "initializer_range", 0.02))
    router = Router(layers, cfg.width, cfg.other_tokens)
    for i in layers:
        mlp = mlps[i]
        a = _anatomy(mlp)
        ref = next(mlp.parameters())
        units = RoutedUnits(a.d_model, cfg.width, copy.deepcopy(a.act), gated=a.gated, bias=a.bias,
                            dropout=a.dropout, init_std=std).to(device=ref.device, dtype=ref.dtype)
        mlp.add_module(ROUTED, units)
        router.handles.append(mlp.register_forward_hook(router.hook))
        if cfg.other_tokens == "train":
            router.handles.append(a.down.register_forward_pre_hook(router.hidden_hook))
    # a plain attribute, not a submodule: the router holds no parameters and must not enter the state dict
    object.__setattr__(model, "condpt_router", router)
    return router


def router_of(model: nn.Module) -> Router | None:
    return getattr(model, "condpt_router", None)


def route_mask(tag_index: torch.Tensor, bad_index: int, position_ids: torch.Tensor) -> torch.Tensor:
    """Per token: does it belong to a document (or segment) tagged bad? (`tag_index` and `position_ids` from
    the packed blocks: -1 untagged.)

    The EOS between two packed documents is one token with two jobs: as a *target* it closes the previous
    document (its `tag_index` is that document's, which the loss accounting wants), as an *input* it is
    position 0 of the next one (document masking lets only that document attend to it). Routing acts on
    inputs, so a position-0 token takes its role from the token after it; elsewhere that is the same
    document, so nothing else changes."""
    owner = tag_index.clone()
    opens = position_ids[:, :-1] == 0
    owner[:, :-1][opens] = tag_index[:, 1:][opens]
    return owner == bad_index


@contextmanager
def route_tokens(router: Router | None, mask: torch.Tensor | None) -> Iterator[Router | None]:
    """Route the forward *and backward* passes run inside the block by `mask` (router None: nothing to do).
    Backward belongs inside too: gradient checkpointing re-runs the forward there."""
    if router is None:
        yield None
        return
    router.mask = mask
    try:
        yield router
    finally:
        router.mask = None


def good_targets(labels: torch.Tensor, tag_index: torch.Tensor, bad_index: int) -> torch.Tensor:
    """[B, T-1]: the target tokens the coherence fine-tune learns from: those with a label, of documents not
    tagged bad (by the target's document, as `condpt.losses.tag_sums` counts them). Documents the tagger
    missed are among them: the paper fine-tunes on true retain data, condpt only has the tags."""
    return (labels[:, 1:] != -100) & (tag_index[:, 1:] != bad_index)


def is_routed_key(name: str) -> bool:
    return f".{ROUTED}." in f".{name}"


def split_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the original model's tensors, the routed units' tensors) of an expanded model's state dict."""
    base = {k: v for k, v in state.items() if not is_routed_key(k)}
    return base, {k: v for k, v in state.items() if is_routed_key(k)}


def ablate(model: nn.Module) -> nn.Module:
    """Remove the routed units and their hooks (in place): the standard model with its original shapes."""
    router = router_of(model)
    if router is None:
        raise ValueError("the model is not expanded for gradient routing")
    for h in router.handles:
        h.remove()
    for b in blocks(model):
        if hasattr(b.mlp, ROUTED):
            delattr(b.mlp, ROUTED)
    object.__delattr__(model, "condpt_router")
    return model


def save_routed(directory: str | Path, routed_state: dict[str, torch.Tensor], router: Router) -> None:
    """Write the routed units beside a standard checkpoint in `directory` (see `load_unablated`)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    save_file({k: v.detach().float().contiguous().cpu() for k, v in routed_state.items()},
              str(directory / ROUTED_WEIGHTS))
    (directory / ROUTE_FILE).write_text(json.dumps(router.config(), indent=1) + "\n", encoding="utf-8")


def load_unablated(directory: str | Path, **kwargs: Any) -> nn.Module:
    """A checkpoint written with `save_routed`, expanded again with its routed units loaded (eval mode)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    directory = Path(directory)
    spec = json.loads((directory / ROUTE_FILE).read_text(encoding="utf-8"))
    model = AutoModelForCausalLM.from_pretrained(str(directory), **kwargs)
    expand(model, RouteConfig(**spec))
    routed = load_file(str(directory / ROUTED_WEIGHTS))
    missing = {k for k, _ in model.named_parameters() if is_routed_key(k)} ^ set(routed)
    if missing:
        raise ValueError(f"{directory / ROUTED_WEIGHTS}: routed tensors do not match {ROUTE_FILE}: {sorted(missing)}")
    model.load_state_dict(routed, strict=False)
    return model.eval()
