"""Hugging Face transformers: roles and param groups of PreTrainedModels, the monitor on GPT-2's Conv1D,
the Trainer callback against a plain loop, and the ready study objective `causal_lm` (and its example YAML).
Every model is tiny and built from a config (never downloaded)."""

from __future__ import annotations

import copy
import math
import re

import pandas as pd
import pytest
import torch
import transformers  # in the test extra: a missing install fails here rather than skipping
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.pytorch_utils import Conv1D

import lrtransfer
from lrtransfer import sweep
from lrtransfer.config import validate
from lrtransfer.data import TextDataConfig
from lrtransfer.integrations import hf_objective as hfo
from lrtransfer.integrations import transformers as hf
from lrtransfer.models.llama import Llama
from lrtransfer.models.llama import LlamaConfig as OurLlamaConfig
from lrtransfer.monitor import AlignmentMonitor, read_records
from lrtransfer.objectives.trial import Trial, run_trial, seed_everything
from lrtransfer.records import jsonl, store

VOCAB, SEQ, LR, WD, FIXED_LR = 64, 8, 1e-2, 0.1, 2e-2


def gpt2(width: int = 64, **kw) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_embd=width, n_layer=2, n_head=width // 16, n_positions=SEQ,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, **kw)
    model = GPT2LMHeadModel(config)
    # The class name does not say "ForCausalLM", so transformers 5.23's Trainer would count all T labels
    # instead of the T-1 shifted ones and train on (T-1)/T times the mean loss; name the loss it computes.
    model.loss_type = "ForCausalLM"
    return model


def llama(width: int = 64, **kw) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=width, intermediate_size=3 * width, num_hidden_layers=2,
                         num_attention_heads=width // 16, num_key_value_heads=width // 16, head_dim=16,
                         max_position_embeddings=SEQ, bos_token_id=0, eos_token_id=0, pad_token_id=0, **kw)
    return LlamaForCausalLM(config)


MODELS = {"gpt2": gpt2, "llama": llama}


def tokens(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, SEQ), generator=torch.Generator().manual_seed(seed))


def train_step(model: nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor) -> None:
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad()


# ---------------------------------------------------------------- roles and param groups

# Built-in llama name -> HF LlamaForCausalLM name (one block; the others differ only in the index).
LLAMA_NAMES = {
    "tok_embeddings": "model.embed_tokens", "norm": "model.norm", "output": "lm_head",
    "attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj", "attention.wv": "self_attn.v_proj",
    "attention.wo": "self_attn.o_proj", "feed_forward.w1": "mlp.gate_proj", "feed_forward.w3": "mlp.up_proj",
    "feed_forward.w2": "mlp.down_proj",
}


def hf_name(ours: str) -> str:
    """``layers.1.attention.wq.weight`` -> ``model.layers.1.self_attn.q_proj.weight``."""
    match = re.fullmatch(r"layers\.(\d+)\.(.+)\.weight", ours)
    if match:
        return f"model.layers.{match[1]}.{LLAMA_NAMES[match[2]]}.weight"
    return f"{LLAMA_NAMES[ours.removesuffix('.weight')]}.weight"


@pytest.mark.parametrize("width", [64, 32], ids=["2x", "1x"])
def test_llama_roles_and_groups_match_the_built_in_llama_layer_for_layer(width):
    cfg = OurLlamaConfig(width=width, base_width=32, depth=2, head_dim=16, vocab_size=VOCAB, seq_len=SEQ)
    ours = Llama(cfg)
    ref = {"width_mult": 1.0} if width == 32 else {"base_model": cfg.build_base()}  # as training does
    theirs = llama(width)
    expected = {hf_name(n): info for n, info in lrtransfer.parameter_roles(ours, **ref).items()}
    got = hf.parameter_roles(theirs, base_hidden_size=32)
    assert set(got) == set(expected)
    for name, info in got.items():
        want = expected[name]
        assert (info.role, info.width_mult, info.fan_in, info.fan_out, info.shape) == (
            want.role, want.width_mult, want.fan_in, want.fan_out, want.shape), name
    rules = dict(lr=LR, weight_decay=WD, fixed_lr=FIXED_LR)
    table = lrtransfer.describe_groups(hf.param_groups(theirs, 32, **rules)).set_index("name")
    want = lrtransfer.describe_groups(lrtransfer.param_groups(ours, **ref, **rules))
    want = want.assign(name=want["name"].map(hf_name)).set_index("name").loc[table.index]
    pd.testing.assert_frame_equal(table, want)


def test_gpt2_tied_embedding_is_one_input_parameter_at_the_fixed_lr():
    model = gpt2(64)
    infos = hf.parameter_roles(model, base_hidden_size=32)
    wte = infos["transformer.wte.weight"]
    assert (wte.role, wte.tied, wte.fan_in, wte.fan_out) == ("input", ("lm_head.weight",), VOCAB, 64)
    assert "lm_head.weight" not in infos and "output" not in {i.role for i in infos.values()}
    blocks = {n: i.role for n, i in infos.items() if n.endswith("weight") and ".c_" in n}
    assert set(blocks.values()) == {"hidden"} and len(blocks) == 2 * 4
    assert infos["transformer.h.1.mlp.c_proj.weight"] == lrtransfer.ParamInfo(
        "transformer.h.1.mlp.c_proj.weight", "hidden", 2.0, 4 * 64, 64, (4 * 64, 64))  # Conv1D: (in, out)
    table = lrtransfer.describe_groups(hf.param_groups(model, 32, lr=LR, weight_decay=WD, fixed_lr=FIXED_LR))
    row = table.set_index("name").loc["transformer.wte.weight"]
    assert (row["role"], row["lr"], row["weight_decay"]) == ("input", FIXED_LR, WD)
    assert len(table) == len(list(model.parameters()))  # the tied tensor appears once
    # The width-multiplier guess agrees: the last block's c_proj is not mistaken for the readout.
    assert lrtransfer.parameter_roles(model, width_mult=2) == infos


def test_gpt2_untied_readout_is_output_and_an_override_may_name_the_tied_alias():
    untied = hf.parameter_roles(gpt2(64, tie_word_embeddings=False), base_hidden_size=32)
    assert (untied["lm_head.weight"].role, untied["lm_head.weight"].width_mult) == ("output", 2.0)
    tied = hf.parameter_roles(gpt2(64), base_hidden_size=32, roles={"lm_head.weight": "output"})
    assert tied["transformer.wte.weight"].role == "output"


def test_base_config_keeps_head_dim_and_scales_heads_and_ffn():
    config = hf.base_config(llama(128).config, 32)
    assert (config.hidden_size, config.intermediate_size, config.num_attention_heads,
            config.num_key_value_heads, config.head_dim, config.vocab_size) == (32, 96, 2, 2, 16, VOCAB)
    g = hf.base_config(gpt2(64).config, 32)
    assert (g.n_embd, g.n_head, g.n_inner, g.n_positions) == (32, 2, None, SEQ)  # n_inner None: 4·n_embd
    assert hf.base_config(gpt2(64, n_inner=200).config, 32).n_inner == 100
    base = hf.base_model(llama(64), 32)
    assert base.model.layers[0].self_attn.q_proj.weight.is_meta


@pytest.mark.parametrize("call, exception, message", [
    (lambda: hf.param_groups(llama(64), 24, lr=LR, weight_decay=WD), ValueError,
     "base_hidden_size: 24 would give num_attention_heads = 4·3/8 = 1.5, not a whole number"),
    (lambda: hf.param_groups(gpt2(64, n_inner=200), 20, lr=LR, weight_decay=WD), ValueError,
     "base_hidden_size: 20 would give n_inner = 200·5/16 = 62.5"),
    (lambda: hf.param_groups(llama(64), 128, lr=LR, weight_decay=WD), ValueError,
     "base_hidden_size: 128 is larger than the model's hidden_size 64"),
    (lambda: hf.param_groups(llama(64), 0, lr=LR, weight_decay=WD), ValueError, "base_hidden_size: must be an int"),
    (lambda: hf.param_groups(nn.Linear(2, 2), 32, lr=LR, weight_decay=WD), TypeError,
     "model: expected a transformers PreTrainedModel, got Linear"),
    (lambda: hf.AlignmentCallback(every=0), ValueError, "every: must be an int >= 1"),
    (lambda: hf.AlignmentCallback(log_to="wandb"), TypeError, "log_to: expected a transformers Trainer, got str"),
])
def test_bad_input_raises_naming_the_argument(call, exception, message):
    with pytest.raises(exception, match=re.escape(message)):
        call()


# ---------------------------------------------------------------- the monitor on GPT-2 (Conv1D)

def test_gpt2_blocks_are_measured():
    model = gpt2(32)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    monitor = AlignmentMonitor(model, every=1, roles=hf.parameter_roles(model, base_hidden_size=16))
    with monitor.step(0):
        train_step(model, opt, tokens(4))
    df = monitor.frame().set_index("layer")
    blocks = [f"transformer.h.{i}.{m}" for i in range(2) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                   "mlp.c_proj")]
    assert df.index.tolist() == [*blocks, "lm_head"]
    fans = df[["fan_in", "fan_out"]].apply(tuple, axis=1).to_dict()
    assert [fans[f"transformer.h.0.{m}"] for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")] == [
        (32, 96), (32, 32), (32, 128), (128, 32)]
    assert df.loc[blocks, "role"].eq("hidden").all() and df.loc["lm_head", "role"] == "input"  # tied to wte
    assert (df["relative_update"] > 0).all() and (df["weight_alignment"] > 0).all()


def test_conv1d_metrics_equal_those_of_a_linear_with_the_transposed_weight():
    torch.manual_seed(0)
    conv = Conv1D(5, 6)  # nf = out, nx = in: weight (6, 5), y = x @ W + b
    linear = nn.Linear(6, 5)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        linear.bias.copy_(torch.randn(5))
        conv.bias.copy_(linear.bias)
    x = torch.randn(8, 3, 6)
    frames = []
    for layer in (conv, linear):
        opt = torch.optim.AdamW(layer.parameters(), lr=LR, weight_decay=WD)
        monitor = AlignmentMonitor(layer, every=1, sample=0.5)
        for step in range(2):
            with monitor.step(step):
                layer(x).sin().sum().backward()
                opt.step()
                opt.zero_grad()
        frames.append(monitor.frame())
    assert frames[0][["fan_in", "fan_out"]].drop_duplicates().values.tolist() == [[6, 5]]
    pd.testing.assert_frame_equal(frames[0], frames[1], rtol=1e-6)


# ---------------------------------------------------------------- the Trainer callback

class Examples(torch.utils.data.IterableDataset):
    """Fixed token rows in a fixed order, so the Trainer's batches are known to the plain loop."""

    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def __iter__(self):
        for row in self.ids:
            yield {"input_ids": row, "labels": row}


def trainer_args(folder, steps: int, batch: int, accumulation: int, **extra) -> transformers.TrainingArguments:
    settings = dict(output_dir=str(folder), max_steps=steps, per_device_train_batch_size=batch,
                    gradient_accumulation_steps=accumulation, lr_scheduler_type="constant", max_grad_norm=0.0,
                    report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, disable_tqdm=True,
                    dataloader_num_workers=0, seed=0)
    return transformers.TrainingArguments(**{**settings, **extra})


def plain_loop(model, ids, steps, batch, accumulation, every, sample) -> pd.DataFrame:
    """The same optimizer steps by hand, measured by a bare AlignmentMonitor on the same step numbers."""
    groups = hf.param_groups(model, 32, lr=LR, weight_decay=WD)
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    roles = {n: g["role"] for g in groups for n in g["param_names"]}
    monitor = AlignmentMonitor(model, every=every, sample=sample, roles=roles)
    micro = ids.split(batch)
    model.train()
    for step in range(1, steps + 1):  # Trainer numbering: global_step after the update
        with monitor.step(step):
            for mb in micro[(step - 1) * accumulation: step * accumulation]:
                (model(input_ids=mb, labels=mb).loss / accumulation).backward()  # mean over all tokens
            opt.step()
        opt.zero_grad()
    return monitor.frame()


@pytest.mark.parametrize("kind, accumulation", [("llama", 1), ("gpt2", 2)])
def test_callback_records_equal_a_plain_loop_on_the_same_steps(tmp_path, kind, accumulation):
    steps, batch, every, sample = 4, 4, 2, 0.5
    model = MODELS[kind](64)
    twin = copy.deepcopy(model)
    ids = tokens(steps * batch * accumulation)
    opt = torch.optim.AdamW(hf.param_groups(model, 32, lr=LR, weight_decay=WD), betas=(0.9, 0.95))
    trainer = transformers.Trainer(model=model, args=trainer_args(tmp_path, steps, batch, accumulation),
                                   train_dataset=Examples(ids), optimizers=(opt, None))
    callback = hf.AlignmentCallback(every=every, sample=sample, log_to=trainer)
    trainer.add_callback(callback)
    trainer.train()
    got = read_records(tmp_path / hf.ALIGNMENT_FILE)
    want = plain_loop(twin, ids, steps, batch, accumulation, every, sample)
    assert got["step"].unique().tolist() == [2, 4] and len(got) == 2 * len(callback.monitor.layers)
    assert set(got["role"]) == ({"hidden", "output"} if kind == "llama" else {"hidden", "input"})
    pd.testing.assert_frame_equal(got, want, rtol=1e-9)  # same kernels in the same order: equal to rounding
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):  # the same weights after training
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-8)
    logged = [e for e in trainer.state.log_history if "alignment/hidden/alignment_ratio" in e]
    assert [e["step"] for e in logged] == [2, 4]
    hidden = got[got["role"] == "hidden"].groupby("step")["alignment_ratio"].mean()
    assert [e["alignment/hidden/alignment_ratio"] for e in logged] == pytest.approx(hidden.tolist(), rel=1e-12)


def test_callback_fresh_run_replaces_old_records(tmp_path):
    model = llama(32)
    ids = tokens(8)
    for _ in range(2):  # a second fresh run in the same output_dir starts the records over
        opt = torch.optim.AdamW(hf.param_groups(model, 32, lr=LR, weight_decay=WD))
        trainer = transformers.Trainer(model=model, args=trainer_args(tmp_path, 2, 4, 1), train_dataset=Examples(ids),
                                       optimizers=(opt, None), callbacks=[hf.AlignmentCallback(every=1)])
        trainer.train()
    df = read_records(tmp_path / hf.ALIGNMENT_FILE)
    assert df["step"].value_counts().sort_index().to_dict() == {1: 15, 2: 15}  # 2 blocks × 7 + lm_head


def test_callback_resumed_run_keeps_the_records_up_to_its_checkpoint(tmp_path):
    ids = tokens(16)

    def run(resume: str | None = None) -> None:
        model = llama(32)
        opt = torch.optim.AdamW(hf.param_groups(model, 32, lr=LR, weight_decay=WD))
        args = trainer_args(tmp_path, 4, 4, 1, save_strategy="steps", save_steps=2)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=Examples(ids), optimizers=(opt, None),
                                       callbacks=[hf.AlignmentCallback(every=1)])
        trainer.train(resume_from_checkpoint=resume)

    run()
    first = read_records(tmp_path / hf.ALIGNMENT_FILE)
    run(resume=str(tmp_path / "checkpoint-2"))  # steps 3 and 4 again, from the step-2 checkpoint
    again = read_records(tmp_path / hf.ALIGNMENT_FILE)
    assert again["step"].value_counts().sort_index().to_dict() == {1: 15, 2: 15, 3: 15, 4: 15}
    pd.testing.assert_frame_equal(again, first, rtol=1e-6)  # the same steps on the same batches and weights


# ---------------------------------------------------------------- the ready objective: causal_lm

CAUSAL_LM = "lrtransfer.integrations.hf_objective:causal_lm"
RULES = dict(lr=LR, weight_decay=WD, fixed_lr=FIXED_LR, wd_scaling="independent")


def causal_lm_config(model_type: str = "llama", width: int = 32, steps: int | None = 8, params: dict | None = None):
    """A trial of `causal_lm` at ``width`` on a 16-wide base, trained on this file's bytes (fast to load)."""
    return validate({
        "objective": CAUSAL_LM, "model": {"width": width, "base_width": 16},
        "params": {"model_type": model_type, "config": {"num_hidden_layers": 1}, "corpus": "files",
                   "paths": [__file__], "seq_len": 16, "batch_size": 4, "val_tokens": 256, **(params or {})},
        "optim": RULES, "monitor": {"every": 3, "sample": 0.5}, "run": {"steps": steps, "final_window": 3}})


@pytest.mark.parametrize("model_type, sizes", [
    ("llama", {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16,
               "intermediate_size": 192, "vocab_size": 256, "max_position_embeddings": 16}),
    ("gpt2", {"n_embd": 64, "n_head": 4, "n_inner": None, "vocab_size": 256, "n_positions": 16, "resid_pdrop": 0.0}),
])
def test_causal_lm_builds_the_config_at_the_trial_width_with_head_dim_fixed(model_type, sizes):
    p = hfo.parse_params({"model_type": model_type, "config": {"num_hidden_layers": 3}, "seq_len": 16})
    config = hfo.model_config(p, width=64, base_width=32, vocab_size=256)
    assert {k: getattr(config, k) for k in sizes} == sizes and config.num_hidden_layers == 3
    base = hfo.model_config(p, width=32, base_width=32, vocab_size=256)
    assert hf.base_config(config, 32).to_dict() == base.to_dict()  # the same model family at two widths


def plain_training(config, steps: int) -> list[float]:
    """What causal_lm should do, written out: hf.param_groups + AdamW + lambda_lr + the text batches."""
    p, seed = hfo.parse_params(config.params), config.run.seed
    data = TextDataConfig(corpus="files", paths=p.paths, seq_len=p.seq_len, val_tokens=p.val_tokens).build()
    seed_everything(seed)
    model = transformers.AutoModelForCausalLM.from_config(hfo.model_config(p, config.model.width, 16, 256))
    opt = torch.optim.AdamW(hf.param_groups(model, 16, **RULES), betas=(0.9, 0.95), fused=config.optim.fused or None)
    sched = lrtransfer.schedules.lambda_lr(opt, lambda t: lrtransfer.schedules.warmup_linear_decay(t, total=steps))
    losses = []
    for step in range(steps):
        x, y = data.train_batch(step, p.batch_size, seed)
        loss = nn.functional.cross_entropy(model(input_ids=x).logits.flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_causal_lm_trial_trains_like_a_plain_loop_and_is_recorded(tmp_path, model_type):
    db = store.open(tmp_path / "runs.db")
    config = causal_lm_config(model_type)
    summary = run_trial(config, tmp_path / "run", store=db).summary
    losses = [r["train_loss"] for r in jsonl.read(tmp_path / "run" / "metrics.jsonl")]
    assert summary["status"] == "done" and summary["steps"] == 8 and math.isfinite(summary["val_loss"])
    assert losses == plain_training(config, 8)  # the same groups, schedule, batches and loss, bit for bit
    assert summary["final_train_loss"] == pytest.approx(sum(losses[-3:]) / 3)
    groups = pd.read_csv(tmp_path / "run" / hfo.GROUPS_FILE).set_index("name")
    hidden = groups[groups["role"] == "hidden"]
    assert len(hidden) == (7 if model_type == "llama" else 4)
    assert (hidden["lr"] == LR / 2).all() and (hidden["weight_decay"] == WD * 2).all()  # η/m, mλ (Eq 6, 8)
    assert (groups.loc[groups["role"] == "input", "lr"] == FIXED_LR).all()
    align = db.alignment(db.find(config.hash())["run_id"])
    assert sorted(set(align["step"])) == [0, 3, 6]
    roles = align.drop_duplicates("layer").set_index("layer")["role"]
    if model_type == "gpt2":  # the Conv1D blocks are measured; the readout is the tied embedding
        assert roles["transformer.h.0.attn.c_attn"] == "hidden" and roles["lm_head"] == "input"
    else:
        assert roles["model.layers.0.self_attn.q_proj"] == "hidden" and roles["lm_head"] == "output"


def test_causal_lm_resumes_from_its_checkpoint_bit_identical(tmp_path, monkeypatch):
    clean = run_trial(causal_lm_config(steps=10, params={"checkpoint_every": 4}), tmp_path / "clean").summary
    log = Trial.log

    def killed_at_step_6(self, step, loss, **metrics):  # a kill between the step-4 and step-8 checkpoints
        log(self, step, loss, **metrics)
        if step == 6:
            raise KeyboardInterrupt

    db = store.open(tmp_path / "runs.db")
    config = causal_lm_config(steps=10, params={"checkpoint_every": 4})
    monkeypatch.setattr(Trial, "log", killed_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, tmp_path / "run", store=db)
    monkeypatch.setattr(Trial, "log", log)
    resumed = run_trial(config, tmp_path / "run", store=db).summary
    rows = jsonl.read(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(10))  # steps 4-6 were dropped and trained again
    assert rows == jsonl.read(tmp_path / "clean" / "metrics.jsonl")
    assert (resumed["final_train_loss"], resumed["val_loss"]) == (clean["final_train_loss"], clean["val_loss"])


@pytest.mark.parametrize("params, steps, message", [
    ({"model_type": "bert"}, 8, "params.model_type: Input should be 'llama' or 'gpt2'"),
    ({"config": {"num_hiden_layers": 1}}, 8, "params.config.num_hiden_layers: not a field of LlamaConfig"),
    ({"config": {"hidden_size": 64}}, 8, "params.config.hidden_size: is set from the trial's width"),
    ({"model_type": "gpt2", "config": {"n_head": 2}}, 8, "params.config.n_head: is set from the trial's width"),
    ({"steps": 300}, 8, "params.steps: Extra inputs are not permitted"),
    ({"config": {"head_dim": 12}}, 8, "base_width: 16 is not a multiple of head_dim 12"),
    ({}, None, "run.steps: causal_lm needs the run's length"),
])
def test_causal_lm_bad_params_fail_the_trial_naming_the_field(tmp_path, params, steps, message):
    summary = run_trial(causal_lm_config(steps=steps, params=params), tmp_path / "run").summary
    assert summary["status"] == "failed" and message in summary["error"], summary["error"]


@pytest.mark.slow
def test_causal_lm_trials_on_ray_workers_equal_local_ones(tmp_path):
    pytest.importorskip("ray")  # the ray extra; Ray workers import the objective by its module path
    base = causal_lm_config().to_dict()
    spec = {"name": "ray", "base": {"objective": CAUSAL_LM, "base_width": 16, "params": base["params"],
                                    "overrides": {"run.steps": 4, "run.final_window": 2, "monitor.every": 2}},
            "widths": [1, 2], "lrs": [LR], "rules": ["independent"], "protocol": "one_phase"}
    local = sweep.run_sweep(spec, tmp_path / "local", workers=1, progress=False)
    remote = sweep.run_sweep(spec, tmp_path / "ray", executor="ray", workers=1, progress=False)
    assert local.ok and remote.ok
    columns = ["config_hash", "status", "final_train_loss", "val_loss"]
    pd.testing.assert_frame_equal(sweep.results(tmp_path / "ray")[columns], sweep.results(tmp_path / "local")[columns])
    assert set(sweep.results(tmp_path / "ray")["status"]) == {"done"}
    assert (tmp_path / "ray" / "runs").is_dir() and len(sweep.alignment(tmp_path / "ray")) > 0
