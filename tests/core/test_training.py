"""Training: the loss goes down, and a resumed run continues bit for bit."""

import json
from functools import partial
from pathlib import Path

import pytest
import torch

from diffusion_core.data import DataConfig, ExampleBuilder, load_corpus
from diffusion_core.model import CodeTransformer
from diffusion_core.testing import tiny_config
from diffusion_core.train import (
    TrainConfig,
    accumulate_gradients,
    load_checkpoint,
    loss_fn,
    micro_batches,
    train,
)


def _cfg(data_dir, out, steps, **kw) -> TrainConfig:
    return TrainConfig(
        data_dirs=(str(data_dir),), out_dir=str(out), preset="tiny", steps=steps, batch_size=4,
        vocab_size=512, warmup=2, lr=3e-3, checkpoint_seconds=1e9, heldout_fraction=0.0,
        data=DataConfig(max_prefix=48, max_suffix=16, max_middle=16, plain_middle=24), **kw,
    )


def test_training_lowers_the_loss(data_dir, tmp_path):
    state = train(_cfg(data_dir, tmp_path / "run", 40, stage2_fraction=0.0), progress=False, log=lambda m: None)
    losses = [x[2] for x in state["losses"]]
    assert losses[-1] < losses[0] - 0.5
    rec = json.loads((tmp_path / "run" / "model" / "training.json").read_text())
    assert rec["steps"] == 40 and rec["tokens"] > 0
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_resume_is_bit_for_bit(data_dir, tmp_path):
    full = tmp_path / "full"
    train(_cfg(data_dir, full, 12), progress=False, log=lambda m: None)
    split = tmp_path / "split"
    train(_cfg(data_dir, split, 12), max_seconds=0.0, progress=False, log=lambda m: None)  # 1 step
    (split / "model").rename(split / "model-partial")
    train(_cfg(data_dir, split, 12), progress=False, log=lambda m: None)
    a = json.loads((full / "checkpoint" / "state.json").read_text())
    b = json.loads((split / "checkpoint" / "state.json").read_text())
    assert a["step"] == b["step"] == 12
    assert a["losses"] == b["losses"]
    ma, mb = CodeTransformer(_model_cfg(full)), CodeTransformer(_model_cfg(full))
    oa, ob = torch.optim.AdamW(ma.parameters()), torch.optim.AdamW(mb.parameters())
    load_checkpoint(full / "checkpoint", ma, oa)
    load_checkpoint(split / "checkpoint", mb, ob)
    for (n, pa), (_, pb) in zip(ma.state_dict().items(), mb.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), n


def _model_cfg(run: Path):
    from diffusion_core.config import ModelConfig

    return ModelConfig.load(run / "config.json")


def test_stage_two_batches_contain_edit_examples(data_dir):
    from diffusion_core.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    corpus = load_corpus(sorted(data_dir.glob("*.py")), 0.0, "train")
    b = ExampleBuilder(corpus, tok, DataConfig(max_prefix=48, max_suffix=16, max_middle=16), "diffusion", 0)
    s1 = b.batch(0, 0, 16, stage=1)
    s2 = b.batch(0, 0, 16, stage=2)
    # stage 1 has loss only on masked positions; edit examples put loss on unmasked tokens too
    assert ((s1.targets != -100) & (s1.ids == tok.special.mask)).sum() == (s1.targets != -100).sum()
    assert ((s2.targets != -100) & (s2.ids != tok.special.mask)).sum() > 0
    assert torch.equal(b.batch(3, 0, 4, 1).ids, b.batch(3, 0, 4, 1).ids)  # a pure function of step


@pytest.mark.parametrize("kind", ["diffusion", "ar"])
def test_micro_batches_give_the_gradient_of_the_whole_step(data_dir, tok, kind):
    corpus = load_corpus(sorted(data_dir.glob("*.py")), 0.0, "train")
    b = ExampleBuilder(corpus, tok, DataConfig(max_prefix=48, max_suffix=16, max_middle=16), kind, 0)
    examples = b.examples(5, 0, 6, stage=2)
    lengths = [e.ids.numel() for e in examples]
    assert len(set(lengths)) > 1  # the whole-step batch pads, the micro-batches do not
    groups = micro_batches(examples, 4)
    assert [len(g) for g in groups] == [4, 2] and sorted(lengths) == [e.ids.numel() for g in groups for e in g]
    torch.manual_seed(0)
    model = CodeTransformer(tiny_config(tok, kind))

    def grads(fn) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = fn()
        return loss, [p.grad.clone() for p in model.parameters()]

    def whole() -> float:
        loss = loss_fn(model, b.batch(5, 0, 6, stage=2))
        loss.backward()
        return float(loss.detach())

    ref_loss, ref = grads(whole)
    for size in (1, 4, 0):
        loss, got = grads(partial(accumulate_gradients, model, examples, tok.special.pad, size, torch.device("cpu")))
        assert abs(loss - ref_loss) < 1e-4 * abs(ref_loss), size
        for g, r in zip(got, ref, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_ar_and_diffusion_share_the_model_code(tok):
    d = CodeTransformer(tiny_config(tok, "diffusion"))
    a = CodeTransformer(tiny_config(tok, "ar"))
    assert type(d) is type(a)
    assert [n for n, _ in d.named_parameters()] == [n for n, _ in a.named_parameters()]
    assert d.num_parameters() == a.num_parameters()


def test_repair_that_rewrites_most_of_the_block_is_no_proposal(tok):
    from diffusion_core.checkpoint import LoadedModel
    from diffusion_core.config import SamplerConfig
    from diffusion_core.engine import Engine, change_ratio
    from diffusion_core.testing import tiny_model

    assert change_ratio([1, 2, 3, 4], [1, 2, 5, 4]) == 0.25
    assert change_ratio([1, 2, 3, 4], []) == 1.0
    eng = Engine(LoadedModel(tiny_model(tok), tok, Path("."), "h"),
                 SamplerConfig(repair_threshold=0.99, repair_max_change=0.0))
    block = "    return a +\n"
    out = eng.repair("def f(a):\n", block, "\n")
    # with max_change 0 any change is a rewrite: the block comes back untouched
    assert out.text == block and not out.changed and out.confidence == 0.0
