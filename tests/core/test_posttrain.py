"""Seed post-training: trajectories, best-of-K, on-policy step reduction, loop and resume."""

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffusion_core.data import DataConfig, collate, masked_infill_example
from diffusion_core.posttrain import PostTrainConfig, posttrain
from diffusion_core.posttrain.examples import trajectory_examples
from diffusion_core.posttrain.onpolicy import onpolicy_batch
from diffusion_core.posttrain.order import order_batch
from diffusion_core.posttrain.speed import measure
from diffusion_core.posttrain.trajectories import (
    Source,
    StateScorer,
    Trajectory,
    onpolicy_rollout,
    order_rollouts,
    select_best,
)
from diffusion_core.testing import DEMO, make_tiny_model_dir, tiny_model
from diffusion_core.train import loss_fn

BLOCK = 8


def demo_source(tok, block: int = BLOCK) -> Source:
    """The docstring line of DEMO as the middle: 16 tokens -> 3 blocks of 8 with <eoi> padding."""
    a, b = DEMO.index('"""'), DEMO.index("return")
    return Source.build(tok.encode(DEMO[:a]), tok.encode(DEMO[b:]), tok.encode(DEMO[a:b]), block, tok.special)


def _check_order(traj: Trajectory) -> None:
    m = len(traj.source.target)
    traj.validate()
    assert traj.commit_step.shape == (m,) and bool((traj.commit_step >= 0).all())  # each committed once
    assert sum(traj.tokens_per_step()) == m
    assert len(traj.tokens_per_step()) == traj.steps
    assert all(n >= 1 for n in traj.tokens_per_step())


def test_order_rollouts_record_valid_scored_orders(tok):
    model = tiny_model(tok)
    src = demo_source(tok)
    sp = tok.special
    trajs = order_rollouts(model, src, k=4, threshold=0.9, temperature=1.0,
                           generator=torch.Generator().manual_seed(0), mask_id=sp.mask, eoi_id=sp.eoi)
    assert len(trajs) == 4
    for t in trajs:
        _check_order(t)
        assert t.tokens.tolist() == src.target  # teacher-forced: the ground truth is committed
    assert len({tuple(t.commit_step.tolist()) for t in trajs}) > 1  # Gumbel noise varies the order
    # The score is the sum of ground-truth log-probs, each position scored in the state it was
    # committed from: replay the states of one trajectory and recompute it.
    t = trajs[0]
    target = torch.tensor(src.target)
    replay = 0.0
    scorer = StateScorer(model, src, sp.mask)
    for s in range(int(t.commit_step.max()) + 1):
        logp = scorer((t.commit_step >= s)[None])[0]  # (m, V)
        now = t.commit_step == s
        replay += float(logp[torch.arange(len(target)), target][now].sum())
    # ... and the cached scorer agrees with the full two-stream forward pass of training
    state = t.commit_step >= 1
    ex = masked_infill_example(src.context, src.target, BLOCK, state, torch.ones(len(target)), sp.mask)
    with torch.inference_mode():
        full = model(ex.ids[None], ex.positions[None], ex.mask).logits[0, -len(target):]
    assert torch.allclose(scorer(state[None])[0], torch.log_softmax(full.float(), -1), atol=1e-4)
    assert t.score == pytest.approx(replay, rel=1e-5)
    # A step cap forces the last allowed step to commit everything left.
    capped = order_rollouts(model, src, k=2, threshold=0.99, temperature=1.0, max_steps_per_block=2,
                            generator=torch.Generator().manual_seed(1), mask_id=sp.mask, eoi_id=sp.eoi)
    for t in capped:
        _check_order(t)
        assert t.block_steps().max() <= 2


def test_onpolicy_rollout_records_the_samplers_order(tok):
    model = tiny_model(tok)
    src = demo_source(tok)
    sp = tok.special
    r = onpolicy_rollout(model, src, threshold=0.5, max_steps_per_block=4, mask_id=sp.mask, eoi_id=sp.eoi)
    t = r.trajectory
    n_blocks = t.commit_step.numel() // BLOCK
    assert t.commit_step.numel() == n_blocks * BLOCK and n_blocks >= 1
    assert bool((t.commit_step >= 0).all())
    assert sum(t.tokens_per_step()) == t.commit_step.numel()
    assert t.steps == r.stats.steps  # one recorded step per sampler step
    assert bool((t.block_steps() <= 4).all())
    assert not r.verified  # a random model does not write the docstring


def test_best_of_k_picks_the_highest_score(tok):
    src = demo_source(tok)
    m = len(src.target)

    def traj(score: float) -> Trajectory:
        return Trajectory(src, torch.zeros(m, dtype=torch.long), torch.tensor(src.target), score)

    cands = [traj(-3.0), traj(-1.0), traj(-2.0), traj(-1.0)]
    assert select_best(cands) is cands[1]  # highest, first on ties
    with pytest.raises(ValueError):
        select_best([])
    # The order stage keeps exactly the best of its K rollouts.
    model = tiny_model(tok)
    sp = tok.special
    cfg = PostTrainConfig(stage="order", data_dirs=(), out_dir="unused", rollouts=3, states_per_trajectory=2)
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    rolled = order_rollouts(model, src, k=3, threshold=cfg.order_threshold, temperature=cfg.order_temperature,
                            generator=g, mask_id=sp.mask, eoi_id=sp.eoi)
    g.set_state(state)
    sb = order_batch(model, [src], cfg, g, sp)
    assert sb.kept == 1 and sb.rejected == 2
    assert sb.scores == [max(t.score for t in rolled)]
    assert 1 <= len(sb.examples) <= 2


def test_order_stage_weights_states_as_configured(tok):
    model = tiny_model(tok)
    src = demo_source(tok)
    sp = tok.special
    m = len(src.target)
    weights = {}
    for weighting in ("elbo", "uniform"):
        cfg = PostTrainConfig(stage="order", data_dirs=(), out_dir="unused", rollouts=2, order_weighting=weighting)
        sb = order_batch(model, [src], cfg, torch.Generator().manual_seed(7), sp)
        weights[weighting] = torch.cat([ex.weights[-m:][ex.targets[-m:] != -100] for ex in sb.examples])
    assert bool((weights["uniform"] == 1.0).all())
    assert bool((weights["elbo"] >= 1.0).all()) and float(weights["elbo"].max()) > 1.0
    with pytest.raises(ValueError, match="order_weighting"):
        PostTrainConfig(stage="order", data_dirs=(), out_dir="unused", order_weighting="1/t")


def test_examples_are_intermediate_states_of_the_trajectory(tok):
    model = tiny_model(tok)
    src = demo_source(tok)
    sp = tok.special
    traj = order_rollouts(model, src, k=1, threshold=0.9, temperature=1.0,
                          generator=torch.Generator().manual_seed(2), mask_id=sp.mask, eoi_id=sp.eoi)[0]
    m, steps = len(src.target), traj.block_steps()
    ref = torch.tensor(src.target)  # (m,)
    first_eoi = src.target.index(sp.eoi)
    later_padding = (ref == sp.eoi) & (torch.arange(m) > first_eoi)
    assert bool(later_padding.any())  # the demo middle is padded past its first <eoi>
    for weighting in ("elbo", "uniform"):
        exs = trajectory_examples(traj, 3, weighting, torch.Generator().manual_seed(3), sp.mask, sp.eoi)
        assert exs
        seen = set()
        for ex in exs:
            noisy, targets, weights = ex.ids[-m:], ex.targets[-m:], ex.weights[-m:]
            masked = noisy == sp.mask
            scored = masked & ~later_padding
            # The loss is on the masked positions, but never on the <eoi> padding after the
            # first <eoi> (the sampler fills it without asking the model).
            assert targets[scored].tolist() == [src.target[i] for i in range(m) if scored[i]]
            assert bool((targets[~scored] == -100).all()) and bool((weights[~scored] == 0).all())
            assert bool((noisy[~masked] == ref[~masked]).all())
            for b in range(m // BLOCK):
                blk = slice(b * BLOCK, (b + 1) * BLOCK)
                cs, mk = traj.commit_step[blk], masked[blk]
                state = int(cs[mk].min()) if mk.any() else int(steps[b])
                assert torch.equal(mk, cs >= state)  # exactly "not yet committed before step s"
                seen.add((b, state))
                sc = scored[blk]
                if sc.any():
                    t = float(mk.float().mean())
                    want = 1.0 / max(t, 0.05) if weighting == "elbo" else 1.0
                    assert torch.allclose(weights[blk][sc], torch.full((int(sc.sum()),), want))
        assert len(seen) > m // BLOCK  # different examples show different states


def _overfit(model, src, sp, steps: int) -> None:
    """Plain MDLM training (random masks) on the single source until the sampler reproduces it."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    m = len(src.target)
    model.train()
    for _ in range(steps):
        exs = []
        for _ in range(4):
            t = (0.05 + 0.95 * torch.rand(m // BLOCK, generator=g)).repeat_interleave(BLOCK)
            masked = torch.rand(m, generator=g) < t
            exs.append(masked_infill_example(src.context, src.target, BLOCK, masked, 1 / t, sp.mask))
        loss = loss_fn(model, collate(exs, sp.pad))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.mark.parametrize("verifier", ["exact", "prefix", "self"])
def test_onpolicy_steps_raise_tokens_per_step_and_keep_exact_match(tok, verifier):
    torch.manual_seed(0)
    model = tiny_model(tok)
    src = demo_source(tok)
    sp = tok.special
    _overfit(model, src, sp, 60)
    before = measure(model, [src], 0.9, sp)
    assert before.exact == 1  # the snippet is learnt, but decoded in several steps per block
    cfg = PostTrainConfig(stage="onpolicy", data_dirs=(), out_dir="unused",
                          onpolicy_schedules=((0.5, 2), (0.7, 4)), states_per_trajectory=2,
                          onpolicy_verifier=verifier)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    teacher = copy.deepcopy(model).eval() if verifier == "self" else None
    losses = []
    for _ in range(6):
        model.eval()
        sb = onpolicy_batch(model, [src], cfg, g, sp, teacher_model=teacher)
        assert sb.kept == 1 and sb.rejected == 0 and sb.examples  # verified few-step rollout
        model.train()
        loss = loss_fn(model, collate(sb.examples, sp.pad))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    after = measure(model, [src], 0.9, sp)
    assert losses[-1] < losses[0]
    assert after.exact == 1
    assert after.tokens_per_step > before.tokens_per_step, (before.to_dict(), after.to_dict())


def test_prefix_verifier_trains_only_the_right_start_of_a_rollout(tok):
    torch.manual_seed(0)
    model = tiny_model(tok)
    src = demo_source(tok)
    sp = tok.special
    _overfit(model, src, sp, 60)
    # A reference that agrees with what the model writes for 5 tokens, then differs.
    k = 5
    other = [t for t in tok.encode(" zzz qqq xxx yyy www vvv uuu") if t not in src.middle][: len(src.middle) - k]
    assert len(other) >= 3
    wrong = Source.build(tok.encode(DEMO[: DEMO.index('"""')]), tok.encode(DEMO[DEMO.index("return"):]),
                         src.middle[:k] + other, BLOCK, sp)
    assert wrong.context == src.context
    r = onpolicy_rollout(model, wrong, threshold=0.9, max_steps_per_block=0, mask_id=sp.mask, eoi_id=sp.eoi)
    assert not r.verified and r.verified_prefix == k  # matching_prefix stops at the first wrong token
    assert onpolicy_rollout(model, src, threshold=0.9, max_steps_per_block=0, mask_id=sp.mask,
                            eoi_id=sp.eoi).verified_prefix == len(src.target)

    exact = PostTrainConfig(stage="onpolicy", data_dirs=(), out_dir="unused", onpolicy_schedules=((0.9, 0),))
    sb = onpolicy_batch(model, [wrong], exact, torch.Generator().manual_seed(1), sp)
    assert (sb.kept, sb.rejected, sb.examples) == (0, 1, [])
    prefix = PostTrainConfig(stage="onpolicy", data_dirs=(), out_dir="unused", onpolicy_schedules=((0.9, 0),),
                             onpolicy_verifier="prefix", states_per_trajectory=4)
    sb = onpolicy_batch(model, [wrong], prefix, torch.Generator().manual_seed(1), sp)
    assert (sb.kept, sb.rejected, sb.rollout_tokens) == (1, 0, k)
    assert sb.rollout_steps == int(r.trajectory.commit_step[:k].max()) + 1  # the prefix lies in block 0
    m = len(wrong.target)
    assert sb.examples
    for ex in sb.examples:
        noisy, targets = ex.ids[-m:], ex.targets[-m:]
        assert bool((noisy[k:] == sp.mask).all())  # never revealed past the verified prefix
        assert bool((targets[k:] == -100).all())  # and no loss there
        scored = targets != -100
        assert bool(scored.any()) and bool((noisy[scored] == sp.mask).all())
        assert targets[scored].tolist() == [wrong.target[i] for i in range(m) if scored[i]]
        revealed = noisy[:k] != sp.mask
        assert noisy[:k][revealed].tolist() == [wrong.target[i] for i in range(k) if revealed[i]]

    # Step distillation ("self"): the reference is what the model writes, not wrong.middle.
    distil = PostTrainConfig(stage="onpolicy", data_dirs=(), out_dir="unused", onpolicy_schedules=((0.5, 2),),
                             onpolicy_verifier="self", states_per_trajectory=4)
    sb = onpolicy_batch(model, [wrong], distil, torch.Generator().manual_seed(1), sp, teacher_model=model)
    assert (sb.kept, sb.rejected, sb.rollout_tokens) == (1, 0, len(src.target))
    for ex in sb.examples:
        targets = ex.targets[-len(src.target):]
        scored = targets != -100
        assert targets[scored].tolist() == [src.target[i] for i in range(len(src.target)) if scored[i]]


# -- the loop: record, CLI, exact resume --------------------------------------------------
@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("base") / "model")


def _cfg(stage, data_dir, base_dir, out, steps=4) -> PostTrainConfig:
    return PostTrainConfig(
        stage=stage, data_dirs=(str(data_dir),), out_dir=str(out), init_from=str(base_dir), steps=steps,
        batch_size=2, lr=1e-3, warmup=1, heldout_fraction=0.0, checkpoint_seconds=1e9, rollouts=2,
        eval_examples=2, eval_block_size=BLOCK, states_per_trajectory=2,
        data=DataConfig(max_prefix=32, max_suffix=16, max_middle=12, plain_middle=16, block_sizes=(BLOCK,)),
    )


def _quiet(_msg) -> None:
    pass


def test_resume_is_bit_for_bit_and_training_json_is_written(data_dir, base_dir, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    a = posttrain(_cfg("order", data_dir, base_dir, full), progress=False, log=_quiet)
    posttrain(_cfg("order", data_dir, base_dir, split), max_steps=2, progress=False, log=_quiet)
    assert json.loads((split / "checkpoint" / "state.json").read_text())["step"] == 2
    b = posttrain(_cfg("order", data_dir, base_dir, split), progress=False, log=_quiet)
    assert a["step"] == b["step"] == 4
    for key in ("losses", "kept", "rejected", "examples", "rollout_steps"):
        assert a[key] == b[key], key
    ta = load_file(str(full / "checkpoint" / "state.safetensors"))
    tb = load_file(str(split / "checkpoint" / "state.safetensors"))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    rec = json.loads((full / "model" / "training.json").read_text())
    assert rec["stage"] == "order" and rec["base_model"] == str(base_dir) and rec["steps"] == 4
    assert rec["trajectories_kept"] == 8 and rec["trajectories_rejected"] == 8  # best 1 of 2, 2 x 4 steps
    for key in ("tokens_per_step_before", "tokens_per_step_after", "wall_seconds", "fine_tuning_examples"):
        assert rec[key] is not None, key
    assert rec["eval"]["split"] == "train" and rec["eval"]["before"]["examples"] == 2
    assert (full / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("verifier", ["exact", "self"])
def test_cli_runs_the_onpolicy_stage(data_dir, base_dir, tmp_path, verifier):
    from lsp_server.cli import main

    out = tmp_path / "run"
    rc = main([
        "train", "--stage", "onpolicy", "--init-from", str(base_dir), str(data_dir), "--out", str(out),
        "--steps", "2", "--batch-size", "1", "--eval-examples", "1", "--heldout-fraction", "0",
        "--onpolicy-schedule", "0.5:4", "--no-progress", "--device", "cpu", "--onpolicy-verifier", verifier,
    ])
    assert rc == 0
    rec = json.loads((out / "model" / "training.json").read_text())
    assert rec["stage"] == "onpolicy" and rec["steps"] == 2
    assert rec["posttrain_config"]["onpolicy_verifier"] == verifier
    assert rec["posttrain_config"]["onpolicy_schedules"] == [[0.5, 4]]
    # a random model verifies nothing: every source is rejected and no update is made
    assert rec["trajectories_kept"] + rec["trajectories_rejected"] == 2
    with pytest.raises(SystemExit):  # post-training needs a diffusion model
        main(["train", "--stage", "order", "--kind", "ar", str(data_dir), "--out", str(tmp_path / "x")])


# -- drafter distillation (joint models) ----------------------------------------------------
def test_draft_example_trains_mask_rows_on_the_verifiers_tokens(tok):
    from diffusion_core.posttrain.draft import draft_example

    e = draft_example([5, 6, 7, 8, 9], [10, 11], n_real=3, k=4, mask_id=tok.special.mask, ar_weight=1.0)
    assert e.ids.tolist() == [5, 6, 7, 8, 9] + [tok.special.mask] * 4
    assert torch.equal(e.mask[:5, :5], torch.ones(5, 5, dtype=torch.bool).tril())
    assert not e.mask[:5, 5:].any() and bool(e.mask[5:].all())
    assert e.targets[5:].tolist() == [10, 11, -100, -100]  # the rollout ended: no loss after it
    assert e.targets[:5].tolist() == [6, 7, -100, -100, -100]  # next-token loss on real text only
    assert e.ar_rows.tolist() == [True, True] + [False] * 7 and e.region == 4


def test_draft_stage_raises_tokens_per_forward(tok):
    from diffusion_core.posttrain.draft import draft_batch
    from diffusion_core.posttrain.speed import measure_draft
    from diffusion_core.speculative import DraftConfig

    torch.manual_seed(0)
    model = tiny_model(tok, kind="joint", seed=1)
    src = demo_source(tok)
    cfg = PostTrainConfig(stage="draft", data_dirs=(), out_dir="unused", states_per_trajectory=6,
                          draft_rollout_tokens=24, data=DataConfig(ar_weight=0.0))
    dc = DraftConfig(masks=4, max_draft=3, source="diffusion")
    before = measure_draft(model, [src], dc, tok.special)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        model.eval()
        sb = draft_batch(model, [src], cfg, g, tok.special)
        model.train()
        opt.zero_grad()
        loss_fn(model, collate(sb.examples, tok.special.pad)).backward()
        opt.step()
    after = measure_draft(model, [src], dc, tok.special)
    assert before.tokens_per_step < 1.3 < after.tokens_per_step


def test_cli_runs_the_draft_stage_on_a_joint_model(data_dir, tmp_path):
    from lsp_server.cli import main

    joint = make_tiny_model_dir(tmp_path / "joint", kind="joint")
    out = tmp_path / "run"
    rc = main(["train", "--stage", "draft", "--init-from", str(joint), str(data_dir), "--out", str(out),
               "--steps", "2", "--batch-size", "1", "--eval-examples", "1", "--heldout-fraction", "0",
               "--no-progress", "--device", "cpu"])
    assert rc == 0
    rec = json.loads((out / "model" / "training.json").read_text())
    assert rec["stage"] == "draft" and rec["steps"] == 2 and rec["fine_tuning_examples"] == 4
    assert rec["tokens_per_step_before"] >= 1.0 and rec["tokens_per_step_after"] >= 1.0
    with pytest.raises(SystemExit, match="joint"):  # the drafter stage needs a joint model
        main(["train", "--stage", "draft", "--init-from", str(make_tiny_model_dir(tmp_path / "d")),
              str(data_dir), "--out", str(tmp_path / "y"), "--steps", "1", "--no-progress"])
