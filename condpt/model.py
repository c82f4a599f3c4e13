"""The model a run trains: from a config (scratch) or a checkpoint (continued pretraining), its vocabulary fitted
to the run's tokenizer; and its size for the metrics: parameters, training FLOPs per token and the matmul peak
that MFU is measured against."""

from __future__ import annotations

import math
import time

import torch

from condpt.config import RunConfig
from condpt.routing import expand
from condpt.tokenizer import base_tokenizer


def _checkpoint_control_rows(cfg: RunConfig, model, tokenizer, manifest) -> None:
    """Rows for the control tokens `model.checkpoint` lacks, as `condpt add-tokens` makes them (tokenizer_ext's
    resize: the mean of the old rows, or with `model.token_init: text` the mean embedding of each description),
    the vocabulary padded to `model.vocab_multiple`. A control id that lands in a spare (padding) row is
    initialised too; a token the checkpoint's tokenizer already has (an add-tokens output, a condpt export)
    keeps its trained row."""
    from tokenizer_ext.resize import resize_model_for_tokens

    if manifest is None:
        raise ValueError("build_model: continued pretraining needs the control-token manifest")
    known = base_tokenizer(cfg).get_vocab()  # the checkpoint's tokenizer, before control tokens were added
    rows = model.get_input_embeddings().weight.shape[0]
    new_ids = sorted({i for s, i in zip(manifest.spec.strings(), manifest.control_ids, strict=True)
                      if s not in known or i >= rows})
    resize_model_for_tokens(model, tokenizer, manifest, init=cfg.model.token_init or "mean",
                            pad_to_multiple_of=cfg.model.vocab_multiple, new_ids=new_ids)


def build_model(cfg: RunConfig, tokenizer, manifest=None):
    """A model from a config (scratch) or a checkpoint (continued pretraining), vocabulary fitted to the
    tokenizer (with a checkpoint, rows for the control tokens of `manifest` it lacks: `_checkpoint_control_rows`)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from condpt.layout import context_length
    from condpt.tiny import tiny_config

    m = cfg.model.vocab_multiple
    vocab = int(math.ceil(len(tokenizer) / m) * m)
    eos = tokenizer.eos_token_id
    torch.manual_seed(cfg.seed)
    if cfg.model.checkpoint is not None:
        model = AutoModelForCausalLM.from_pretrained(str(cfg.model.checkpoint), dtype=torch.float32)
        _checkpoint_control_rows(cfg, model, tokenizer, manifest)
    else:
        spec = dict(cfg.model.config)
        if "arch" in spec:
            arch = spec.pop("arch")
            spec.setdefault("max_positions", cfg.data.block_size)
            hf_config = tiny_config(arch, vocab, eos_token_id=eos, **spec)
        else:
            model_type = spec.pop("model_type")
            spec.update(vocab_size=vocab, eos_token_id=eos, bos_token_id=tokenizer.bos_token_id or eos)
            hf_config = AutoConfig.for_model(model_type, **spec)
        model = AutoModelForCausalLM.from_config(hf_config)
    if cfg.data.policy.mode == "route":  # before wrapping: ZeRO-3 partitions what exists at prepare()
        expand(model, cfg.data.policy.route)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    max_pos = context_length(model.config)
    if max_pos is not None and cfg.data.block_size > max_pos:
        raise ValueError(f"data.block_size={cfg.data.block_size} exceeds the model's {max_pos} positions")
    return model


def _numel(p: torch.Tensor) -> int:
    return int(getattr(p, "ds_numel", 0)) or p.numel()  # ZeRO-3 partitions parameters at construction


def count_params(model) -> int:
    return sum(_numel(p) for p in model.parameters())


def flops_per_token(model, seq_len: int) -> float:
    """Training FLOPs per token: 6·N (forward + backward matmuls, embedding lookups excluded, the LM head
    counted once) + 12·layers·d_model·seq (attention scores), as in the PaLM/Chinchilla estimates."""
    cfg = model.config
    n = count_params(model)
    tied = getattr(cfg, "tie_word_embeddings", False)
    lookups = 0 if tied else _numel(model.get_input_embeddings().weight)  # untied: the input table is a lookup, the head is a matmul
    for name, p in model.named_parameters():
        if "wpe" in name or "position_embeddings" in name:
            lookups += _numel(p)
    layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    d = getattr(cfg, "hidden_size", None) or cfg.n_embd
    return 6.0 * (n - lookups) + 12.0 * layers * d * seq_len


def measure_matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 0.5) -> float:
    """Achieved FLOP/s of a square matmul in this process (the MFU denominator when none is configured)."""
    n = 1024 if device.type == "cpu" else 4096
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    (a @ b).sum().item()  # warm-up
    reps, t0 = 0, time.perf_counter()
    while True:
        c = a @ b
        reps += 1
        if device.type != "cpu":
            torch.cuda.synchronize() if device.type == "cuda" else c.sum().item()
        if time.perf_counter() - t0 > seconds:
            break
    return 2.0 * n**3 * reps / (time.perf_counter() - t0)
