"""Training: the loss goes down, and a resumed run continues bit for bit."""

import json
from dataclasses import replace
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


def test_snapshots_are_model_directories_of_the_run_so_far(data_dir, tmp_path):
    """`snapshot_every` N: a loadable model directory every N steps, with the record of the
    run up to it; the final weights still go to model/ only."""
    from diffusion_core.checkpoint import load_model_dir

    train(_cfg(data_dir, tmp_path / "run", 10, snapshot_every=4, kind="joint"), progress=False,
          log=lambda m: None)
    snaps = tmp_path / "run" / "snapshots"
    assert sorted(p.name for p in snaps.iterdir()) == ["step4", "step8"]
    rec = json.loads((snaps / "step4" / "training.json").read_text())
    assert rec["steps"] == 4 and rec["planned_steps"] == 10
    assert load_model_dir(snaps / "step8").model.cfg.kind == "joint"
    assert json.loads((tmp_path / "run" / "model" / "training.json").read_text())["steps"] == 10
    with pytest.raises(ValueError, match="snapshot_every"):
        _cfg(data_dir, tmp_path / "bad", 10, snapshot_every=-1)


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


@pytest.mark.parametrize("kind", ["diffusion", "joint"])
def test_syntax_edit_examples_restore_one_realistic_edit(data_dir, kind):
    from diffusion_core.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    corpus = load_corpus(sorted(data_dir.glob("*.py")), 0.0, "train")
    cfg = DataConfig(max_prefix=48, max_suffix=16, max_middle=32, p_edit_stage2=1.0, p_syntax_edit=1.0)
    b = ExampleBuilder(corpus, tok, cfg, kind, 0)
    seen = 0
    for e in b.examples(2, 0, 12, stage=2):
        canvas = e.ids[e.source:]
        target = e.targets[e.source:]
        if bool((canvas == tok.special.mask).any()):
            continue  # re-masked as the repair sampler does: not comparable as text
        old, new = tok.decode(target.tolist()), tok.decode(canvas.tolist())
        if old == new:
            continue  # a middle with nothing to break
        assert abs(len(old) - len(new)) <= 1  # one character dropped, doubled or swapped
        seen += 1
    assert seen >= 3


@pytest.mark.parametrize("kind", ["diffusion", "ar", "joint"])
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


def test_joint_examples_train_both_paths_without_leaks(data_dir, tok):
    """Joint kind: a causal clean stream with next-token targets, and noisy blocks that see
    only the clean tokens before their own block (never their own or later clean tokens)."""
    corpus = load_corpus(sorted(data_dir.glob("*.py")), 0.0, "train")
    cfg = DataConfig(max_prefix=48, max_suffix=16, max_middle=16, noisy_context_tokens=16)
    b = ExampleBuilder(corpus, tok, cfg, "joint", 0)
    for stage in (1, 2):
        for e in b.examples(3, 0, 8, stage):
            t = e.source_tokens
            clean = e.mask[:t, :t]
            assert torch.equal(clean, torch.ones(t, t, dtype=torch.bool).tril())  # causal
            assert not e.mask[:t, t:].any()  # clean rows never see the noisy stream
            ar = e.ar_rows
            assert ar is not None and not ar[t:].any() and ar[:t].sum() >= t // 2
            rows = torch.nonzero(ar).flatten()
            assert torch.equal(e.targets[rows], e.ids[rows + 1])  # the next token
            for a in range(t, e.ids.numel()):  # noisy row a is a copy of position p
                p = int(e.positions[a])
                seen = torch.nonzero(e.mask[a, :t]).flatten()
                assert seen.numel() == 0 or int(seen.max()) < p  # nothing at or after p
                if e.targets[a] != -100:
                    assert e.ids[a] in (tok.special.mask, e.ids[p]) or stage == 2
    s1 = b.batch(0, 0, 4, 1)
    noisy = (s1.targets != -100) & ~s1.ar_rows
    assert bool((s1.ids[noisy] == tok.special.mask).all())  # stage 1: loss at masked rows only


def test_middle_weight_moves_the_next_token_loss_onto_the_middle(data_dir, tok):
    """`middle_weight` m: a middle row (from <mid> to the row predicting <eoi>) weighs m
    context rows; the next-token loss keeps its total, the noisy rows are untouched."""
    corpus = load_corpus(sorted(data_dir.glob("*.py")), 0.0, "train")
    cfg = DataConfig(max_prefix=48, max_suffix=16, max_middle=16, ar_weight=2.0)
    plain = ExampleBuilder(corpus, tok, cfg, "joint", 0).examples(5, 0, 6, 1)
    heavy = ExampleBuilder(corpus, tok, replace(cfg, middle_weight=4.0), "joint", 0).examples(5, 0, 6, 1)
    for a, b in zip(plain, heavy, strict=True):
        assert torch.equal(a.ids, b.ids) and torch.equal(a.targets, b.targets)
        rows = torch.nonzero(b.ar_rows).flatten()
        mid = int(torch.nonzero(b.ids == tok.special.mid).flatten()[0])  # the <mid> row
        assert torch.allclose(b.weights[rows].sum(), a.weights[rows].sum())
        assert torch.allclose(a.weights[rows], a.weights[rows[0]].expand(rows.numel()))
        ctx, middle = b.weights[rows[rows < mid]], b.weights[rows[rows >= mid]]
        assert middle.numel() >= 2 and torch.allclose(middle, 4.0 * ctx[0].expand(middle.numel()))
        assert torch.equal(a.weights[~a.ar_rows], b.weights[~b.ar_rows])


def test_joint_training_lowers_both_losses_and_exports(data_dir, tmp_path):
    state = train(_cfg(data_dir, tmp_path / "run", 40, stage2_fraction=0.2, kind="joint"),
                  progress=False, log=lambda m: None)
    rows = state["losses"]
    assert all(len(r) == 4 for r in rows)  # step, stage, loss, next-token part
    assert rows[-1][2] < rows[0][2] - 0.5 and rows[-1][3] < rows[0][3] - 0.2
    assert 0 < state["source_tokens"] < state["tokens"]
    rec = json.loads((tmp_path / "run" / "model" / "training.json").read_text())
    assert rec["kind"] == "joint" and rec["final_loss_stage2"] is not None
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert cfg["kind"] == "joint" and cfg["shifted_logits"] is False


def test_package_cap_limits_any_one_package():
    from diffusion_core.data import capped_weights, package_of

    assert package_of("/usr/lib/python3.11/site-packages/sympy/core/add.py") == "sympy"
    assert package_of("/usr/lib/python3.11/site-packages/six.py") == "six"
    assert package_of("/root/.pyenv/versions/3.11.7/lib/python3.11/email/utils.py") == "email"
    assert package_of("/src/proj/pkg/mod.py") == "pkg"
    sizes = [50.0, 30.0] + [1.0] * 40
    groups = ["big", "big", "mid"] + [f"g{i}" for i in range(39)]
    w = capped_weights(sizes, groups, 0.05)
    total = sum(w)
    share = {}
    for x, grp in zip(w, groups, strict=True):
        share[grp] = share.get(grp, 0.0) + x / total
    assert max(share.values()) <= 0.05 + 1e-9
    assert abs(w[0] / w[1] - 50 / 30) < 1e-9  # proportional to size inside a package
    assert capped_weights([1.0, 2.0], ["a", "b"], 0.05) == [0.5, 0.5]  # too few groups: equal


def test_mix_gives_a_directory_its_share_of_the_samples(tmp_path):
    from diffusion_core.data import mixed_weights

    big, small = tmp_path / "big", tmp_path / "small"
    paths = [str(big / f"p{i}" / "m.py") for i in range(4)] + [str(small / "q" / "m.py")]
    sizes = [100.0, 100.0, 100.0, 100.0, 1.0]
    groups = [f"p{i}" for i in range(4)] + ["q"]
    w = mixed_weights(sizes, paths, groups, 0.0, ((str(small), 0.3),))
    assert abs(sum(w) - 1) < 1e-9
    assert abs(w[4] - 0.3) < 1e-9  # one small file, yet 30% of the draws
    assert all(abs(x - 0.7 / 4) < 1e-9 for x in w[:4])
    assert mixed_weights(sizes, paths, groups, 0.0, ()) == sizes  # no mix: size-weighted
    with pytest.raises(ValueError, match="no training files"):
        mixed_weights(sizes, paths, groups, 0.0, ((str(tmp_path / "none"), 0.2),))
    with pytest.raises(ValueError, match="sum to at most 1"):
        mixed_weights(sizes, paths, groups, 0.0, ((str(small), 0.7), (str(big), 0.6)))


def test_mix_directories_are_read_and_recorded(tmp_path):
    import argparse

    from lsp_server import cmd_train

    p = argparse.ArgumentParser()
    cmd_train.add_arguments(p)
    extra = tmp_path / "extra"
    args = p.parse_args([str(tmp_path / "lib"), "--out", "o", "--mix", f"{extra}=0.25"])
    assert args.mix == [(str(extra), 0.25)]
    assert cmd_train._with_mix_dirs(args.data_dirs, args.mix) == (str(tmp_path / "lib"), str(extra))
    assert cmd_train._with_mix_dirs([str(tmp_path)], args.mix) == (str(tmp_path),)  # already under it
    for bad in ("0.3", f"{extra}=1.5", f"{extra}=x"):
        with pytest.raises(SystemExit):
            p.parse_args([str(tmp_path), "--out", "o", "--mix", bad])
