"""Training data: source files from directories, split by file, turned into examples.

Examples are built at the character level (prefix / middle / suffix cut from the text
and tokenized separately), exactly as the server tokenizes a document around the cursor.
Every batch is a pure function of (seed, step, rank), which makes resume exact and
lets each torch.distributed rank draw its own examples without coordination.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from diffusion_core.corruption import edit_corrupt, format_infill, mask_corrupt, syntax_edits
from diffusion_core.masks import causal_mask, two_stream_mask
from diffusion_core.schedule import loss_weight
from diffusion_core.tokenizer import CodeTokenizer

MAX_FILE_BYTES = 1_000_000


def is_under(path: str | Path, root: str | Path) -> bool:
    """Whether `path` is `root` or inside it, both resolved (symlinks followed)."""
    rp, rr = Path(path).resolve(), Path(root).resolve()
    return rp == rr or rr in rp.parents


def _forbidden(path: Path, forbidden: list[Path]) -> bool:
    return any(is_under(path, f) for f in forbidden)


def list_source_files(
    dirs: Iterable[str | Path], suffixes: tuple[str, ...] = (".py",), forbidden: Iterable[str | Path] = ()
) -> list[Path]:
    """Sorted, content-deduplicated source files under `dirs`, never under `forbidden`."""
    forb = [Path(f).resolve() for f in forbidden]
    seen: set[str] = set()
    out: list[Path] = []
    for d in dirs:
        d = Path(d)
        if _forbidden(d, forb):
            raise ValueError(f"refusing to read training data from {d}: it is an evaluation directory")
        for root, dirnames, files in os.walk(d):
            dirnames.sort()
            if _forbidden(Path(root), forb):
                dirnames[:] = []
                continue
            for name in sorted(files):
                p = Path(root) / name
                if not name.endswith(suffixes) or p.is_symlink():
                    continue
                try:
                    data = p.read_bytes()
                except OSError:
                    continue
                if not data.strip() or len(data) > MAX_FILE_BYTES:
                    continue
                h = hashlib.sha256(data).hexdigest()
                if h not in seen:
                    seen.add(h)
                    out.append(p)
    return out


def is_heldout(text: str, fraction: float) -> bool:
    """Deterministic split by file content (robust to where the file lives)."""
    h = int(hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:8], 16)
    return (h % 10_000) < fraction * 10_000


@dataclass
class Corpus:
    texts: list[str]
    paths: list[str]

    def packages(self) -> list[str]:
        """The top-level package of each file (see `package_of`)."""
        return [package_of(p) for p in self.paths]

    @property
    def n_chars(self) -> int:
        return sum(len(t) for t in self.texts)


def package_of(path: str) -> str:
    """Top-level package of a source file: the first directory under `site-packages` (or
    `dist-packages`), else under the `lib/pythonX.Y` of a standard library, else the file's
    parent directory. Files directly under such a root form one group per module name."""
    parts = Path(path).parts
    for i in range(len(parts) - 2, -1, -1):
        name = parts[i]
        if name in ("site-packages", "dist-packages") or (
            name.startswith("python3") and i > 0 and parts[i - 1] == "lib"
        ):
            top = parts[i + 1]
            return top.removesuffix(".py") if i + 2 == len(parts) else top
    return parts[-2] if len(parts) > 1 else ""


def capped_weights(sizes: list[float], groups: list[str], cap: float) -> list[float]:
    """Sampling weight of each item so that no group gets more than `cap` of the total.

    Items are drawn in proportion to their size inside a group; a group's share is its
    share of the sizes, lowered to `cap` where it is above (water-filling: the mass taken
    from large groups goes to the others in proportion, so the cap holds after it). With
    fewer than 1/cap groups the cap cannot hold, and the groups get equal shares.
    """
    total_by: dict[str, float] = {}
    for size, grp in zip(sizes, groups, strict=True):
        total_by[grp] = total_by.get(grp, 0.0) + size
    if cap <= 0 or cap >= 1 or not total_by:
        return list(sizes)
    share = dict(total_by)
    capped: set[str] = set()
    while True:
        free = [k for k in share if k not in capped]
        if not free:
            break
        budget = 1.0 - cap * len(capped)
        mass = sum(total_by[k] for k in free)
        over = [k for k in free if total_by[k] / mass * budget > cap]
        if not over:
            for k in free:
                share[k] = total_by[k] / mass * budget
            break
        capped.update(over)
        for k in over:
            share[k] = cap
    if len(capped) == len(share):  # fewer groups than 1/cap: equal shares
        share = {k: 1.0 / len(share) for k in share}
    return [size / total_by[grp] * share[grp] for size, grp in zip(sizes, groups, strict=True)]


def mixed_weights(
    sizes: list[float], paths: list[str], groups: list[str], cap: float,
    mix: tuple[tuple[str, float], ...],
) -> list[float]:
    """Sampling weights (summing to 1) where the files under each `mix` directory get that
    directory's share and the other files the rest; inside each part as `capped_weights`.
    A file under several mix directories belongs to the first."""
    if not mix:
        return capped_weights(sizes, groups, cap)
    shares = [float(share) for _, share in mix]
    if min(shares) <= 0 or sum(shares) > 1 + 1e-9:
        raise ValueError(f"mix shares must be positive and sum to at most 1, got {shares}")
    part = [next((i for i, (d, _) in enumerate(mix) if is_under(p, d)), -1) for p in paths]
    rest = 1.0 - sum(shares)
    out = [0.0] * len(sizes)
    for i in [*range(len(mix)), -1]:
        idx = [j for j, q in enumerate(part) if q == i]
        if not idx:
            if i >= 0:
                raise ValueError(f"mix: no training files under {mix[i][0]}")
            continue
        w = capped_weights([sizes[j] for j in idx], [groups[j] for j in idx], cap)
        total = sum(w) or 1.0
        share = shares[i] if i >= 0 else rest
        for j, wj in zip(idx, w, strict=True):
            out[j] = wj / total * share
    return out


def load_corpus(files: list[Path], heldout_fraction: float, split: str) -> Corpus:
    texts, paths = [], []
    for p in files:
        try:
            t = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "\x00" in t:
            continue
        if is_heldout(t, heldout_fraction) == (split == "heldout"):
            texts.append(t)
            paths.append(str(p))
    return Corpus(texts, paths)


@dataclass(frozen=True)
class DataConfig:
    max_prefix: int = 192
    max_suffix: int = 96
    max_middle: int = 96
    plain_middle: int = 160  # left-to-right examples: long multi-block middles
    block_sizes: tuple[int, ...] = (8, 16, 32, 32)
    p_plain: float = 0.3  # share of examples with no suffix and a long middle
    p_line: float = 0.5  # share of infill middles cut at line boundaries
    p_edit_stage2: float = 0.5  # share of edit examples in stage 2
    # share of those whose corruption is one realistic syntax edit (`syntax_edits`: a
    # missing colon, an extra paren, a misspelt keyword...) instead of random token edits
    p_syntax_edit: float = 0.3
    max_edit_rate: float = 0.1  # Seed Diffusion: a in [0, 0.1]
    t_min: float = 0.05
    context_loss: bool = True  # noise and denoise the context blocks too, not only the middle
    # No top-level package gets more than this share of the sampled files' characters
    # (sympy, scipy and moto were over a third of the data; 0 = sample by size only).
    package_cap: float = 0.05
    # (directory, share) pairs: files under the directory get that share of the sampled
    # characters, the rest of the corpus what is left (the package cap applies inside each
    # part). A small corpus of short, documented functions can so be a set share of training
    # however big the rest is. Empty: one part, sampled by capped size.
    mix: tuple[tuple[str, float], ...] = ()
    # kind="joint" (issue 19): weights of the next-token loss on the causal clean stream
    # and of the block-diffusion loss on the noisy stream (each a mean per scored token),
    # and how many context tokens, as whole blocks besides the middle's, the noisy stream
    # copies (-1: all of them, as `context_loss` does for the diffusion kind).
    ar_weight: float = 1.0
    diffusion_weight: float = 1.0
    # kind="joint": how much more a next-token row of the middle (the <mid> row through
    # the one that predicts <eoi>) weighs than a context row, the next-token loss keeping
    # its total weight. 1: every row alike, as FIM AR training does; more puts the loss
    # where infilling is decided (predicting a hole from the prefix *and* the suffix).
    middle_weight: float = 1.0
    noisy_context_tokens: int = 96


@dataclass
class Example:
    ids: torch.Tensor  # (L,) clean stream, then noisy stream
    positions: torch.Tensor  # (L,)
    mask: torch.Tensor  # (L, L)
    targets: torch.Tensor  # (L,) -100 where there is no loss
    weights: torch.Tensor  # (L,) loss weight
    region: int  # tokens in the loss region (normaliser)
    ar_rows: torch.Tensor | None = None  # (L,) bool: rows of the next-token loss (joint kind)
    source: int = -1  # length of the clean stream (the rows before the noisy ones); -1: all of `ids`

    @property
    def source_tokens(self) -> int:
        return self.ids.numel() if self.source < 0 else self.source


@dataclass
class Batch:
    ids: torch.Tensor  # (B, L)
    positions: torch.Tensor  # (B, L)
    mask: torch.Tensor  # (B, L, L)
    targets: torch.Tensor  # (B, L)
    weights: torch.Tensor  # (B, L)
    region: int
    ar_rows: torch.Tensor | None = None  # (B, L) bool, or None when no example has any

    def to(self, device) -> Batch:
        return Batch(
            self.ids.to(device), self.positions.to(device), self.mask.to(device),
            self.targets.to(device), self.weights.to(device), self.region,
            None if self.ar_rows is None else self.ar_rows.to(device),
        )


class ExampleBuilder:
    def __init__(self, corpus: Corpus, tokenizer: CodeTokenizer, cfg: DataConfig, kind: str, seed: int) -> None:
        if not corpus.texts:
            raise ValueError("the training corpus is empty")
        self.corpus, self.tok, self.cfg, self.kind, self.seed = corpus, tokenizer, cfg, kind, seed
        self.sp = tokenizer.special
        sizes = [float(len(t)) for t in corpus.texts]
        weights = mixed_weights(sizes, corpus.paths, corpus.packages(), cfg.package_cap, cfg.mix)
        self.cum = torch.tensor(weights, dtype=torch.float64).cumsum(0)
        self.vocab = torch.tensor(
            [i for i in range(tokenizer.vocab_size) if i not in tokenizer.special_ids], dtype=torch.long
        )

    # -- cutting text -------------------------------------------------------------
    def _pick(self, rng: random.Random) -> str:
        x = rng.random() * float(self.cum[-1])
        i = int(torch.searchsorted(self.cum, torch.tensor([x], dtype=torch.float64)))
        return self.corpus.texts[min(i, len(self.corpus.texts) - 1)]

    def _cut(self, rng: random.Random, text: str, lines: bool, max_lines: int) -> tuple[int, int]:
        if lines:
            a = text.rfind("\n", 0, rng.randrange(len(text))) + 1  # start of a random line
            b = a
            for _ in range(rng.randint(1, max_lines)):
                nl = text.find("\n", b)
                b = len(text) if nl < 0 else nl + 1
                if b >= len(text):
                    break
            return a, b
        c = rng.randrange(len(text))
        return c, min(len(text), c + rng.randint(1, 4 * self.cfg.max_middle))

    def _context(self, rng: random.Random, text: str, a: int, b: int, no_suffix: bool) -> tuple[list[int], list[int]]:
        cfg = self.cfg
        prefix = self.tok.encode(text[max(0, a - 6 * cfg.max_prefix) : a])
        prefix = prefix[len(prefix) - min(len(prefix), rng.randint(cfg.max_prefix // 4, cfg.max_prefix)) :]
        suffix = [] if no_suffix else self.tok.encode(text[b : b + 6 * cfg.max_suffix])
        return prefix, suffix[: rng.randint(0, cfg.max_suffix)] if suffix else []

    def _middle(self, text: str, a: int, b: int, limit: int) -> tuple[list[int], int]:
        """Tokens of text[a:b], cut to `limit`; b moves back so the suffix stays adjacent."""
        ids = self.tok.encode(text[a:b])
        if len(ids) > limit:
            ids = ids[:limit]
            b = a + len(self.tok.decode(ids))
        return ids, b

    # -- examples ---------------------------------------------------------------------
    def example(self, rng: random.Random, g: torch.Generator, stage: int) -> Example:
        cfg = self.cfg
        text = self._pick(rng)
        block = rng.choice(cfg.block_sizes)
        if stage == 2 and rng.random() < cfg.p_edit_stage2:
            a, b = self._cut(rng, text, True, 6)
            middle, b = self._middle(text, a, b, cfg.max_middle)
            prefix, suffix = self._context(rng, text, a, b, rng.random() < 0.15)
            broken = None
            if rng.random() < cfg.p_syntax_edit:
                edits = syntax_edits(self.tok.decode(middle), rng)
                broken = self.tok.encode(edits[0]) if edits else None
            return self._edit_example(prefix, suffix, middle, rng, g, broken)
        prefix, suffix, middle = self.infill_pieces(rng, text)
        if self.kind == "ar":
            return self._ar_example(prefix, suffix, middle)
        if self.kind == "joint":
            return self._joint_example(prefix, suffix, middle, block, g)
        return self._infill_example(prefix, suffix, middle, block, g)

    def infill_pieces(self, rng: random.Random, text: str) -> tuple[list[int], list[int], list[int]]:
        """(prefix, suffix, middle) token ids of one random stage-1 cut of `text`."""
        cfg = self.cfg
        plain = rng.random() < cfg.p_plain
        a, b = self._cut(rng, text, rng.random() < cfg.p_line, 4)
        if plain:
            b = len(text)
        middle, b = self._middle(text, a, b, cfg.plain_middle if plain else cfg.max_middle)
        prefix, suffix = self._context(rng, text, a, b, plain or rng.random() < 0.15)
        return prefix, suffix, middle

    def infill_source(self, rng: random.Random) -> tuple[list[int], list[int], list[int], int]:
        """(prefix, suffix, middle, block size) of one infill example, without corruption.

        Post-training (diffusion_core.posttrain) rolls the model out on these.
        """
        text = self._pick(rng)
        block = rng.choice(self.cfg.block_sizes)
        prefix, suffix, middle = self.infill_pieces(rng, text)
        return prefix, suffix, middle, block

    def _infill_example(self, prefix, suffix, middle, block: int, g: torch.Generator) -> Example:
        context, mid = format_infill(prefix, suffix, middle, block, self.sp)
        # With context_loss every block of the sequence is noised and denoised (BD3-LM's
        # objective on the whole FIM sequence, as FIM AR models take loss on every token);
        # otherwise only the middle. One mask rate per block, ELBO-weighted masked loss.
        start = 0 if self.cfg.context_loss else len(context)
        bid = infill_block_ids(len(context), len(mid), block)[start:]  # (n,)
        bid = bid - bid[0]
        t = self.cfg.t_min + (1 - self.cfg.t_min) * torch.rand(int(bid[-1]) + 1, generator=g)
        t_tok = t[bid]  # (n,)
        masked = torch.rand(bid.numel(), generator=g) < t_tok
        return masked_infill_example(
            context, mid, block, masked, loss_weight(t_tok), self.sp.mask, noisy_from=start
        )

    def _joint_example(self, prefix, suffix, middle, block: int, g: torch.Generator) -> Example:
        """Both losses of the joint model on one FIM sequence (issue 19).

        Clean stream: the whole sequence under a causal mask, next-token loss on every row
        up to the first <eoi> (the padding after it carries nothing to predict). Noisy
        stream: the middle's blocks and up to `noisy_context_tokens` of randomly chosen
        context blocks (never the first, which would have no clean prefix), each with
        its own mask rate and the MDLM 1/t weight, as `_infill_example`.
        """
        cfg = self.cfg
        context, mid = format_infill(prefix, suffix, middle, block, self.sp)
        n_ctx, n_mid = len(context), len(mid)
        bid = infill_block_ids(n_ctx, n_mid, block)  # (T,)
        n_ctx_blocks = math.ceil(n_ctx / block)
        budget = n_ctx_blocks if cfg.noisy_context_tokens < 0 else cfg.noisy_context_tokens // block
        pick = (torch.randperm(max(0, n_ctx_blocks - 1), generator=g)[:budget] + 1).tolist()
        chosen = torch.zeros(int(bid[-1]) + 1, dtype=torch.bool)
        chosen[pick] = True
        chosen[n_ctx_blocks:] = True
        noisy_index = torch.nonzero(chosen[bid]).flatten()  # (n,) ascending positions
        t = cfg.t_min + (1 - cfg.t_min) * torch.rand(chosen.numel(), generator=g)
        t_tok = t[bid[noisy_index]]  # (n,)
        masked = torch.rand(noisy_index.numel(), generator=g) < t_tok
        seq = torch.tensor(context + mid)
        t_all, n = seq.numel(), noisy_index.numel()
        n_ar = n_ctx + len(middle)  # rows 0 .. n_ar-1 predict seq[1 .. n_ar] (the first <eoi>)
        noisy = torch.where(masked, torch.full((n,), self.sp.mask), seq[noisy_index])
        targets = torch.full((t_all + n,), -100)
        targets[:n_ar] = seq[1 : n_ar + 1]
        targets[t_all:] = torch.where(masked, seq[noisy_index], torch.full((n,), -100))
        # Each loss a mean over its own tokens once the sum is divided by `region` = n.
        w = torch.zeros(t_all + n)
        if cfg.middle_weight == 1.0:
            w[:n_ar] = cfg.ar_weight * n / n_ar
        else:  # rows n_ctx-1 .. n_ar-1 predict the middle and its <eoi>
            r = torch.ones(n_ar)  # (n_ar,) relative weight of each next-token row
            r[n_ctx - 1 :] = cfg.middle_weight
            w[:n_ar] = cfg.ar_weight * n * r / r.sum()
        w[t_all:] = torch.where(masked, cfg.diffusion_weight * loss_weight(t_tok), torch.zeros(n))
        ar_rows = torch.zeros(t_all + n, dtype=torch.bool)
        ar_rows[:n_ar] = True
        return Example(
            ids=torch.cat([seq, noisy]),
            positions=torch.cat([torch.arange(t_all), noisy_index]),
            mask=two_stream_mask(bid, noisy_index, causal_clean=True),
            targets=targets,
            weights=w,
            region=n,
            ar_rows=ar_rows,
            source=t_all,
        )

    def _edit_example(self, prefix, suffix, middle, rng: random.Random, g: torch.Generator,
                      broken: list[int] | None = None) -> Example:
        """Stage 2: the canvas is `middle` with random token edits (Seed Diffusion), or the
        given `broken` tokens (one syntax edit of it); the target is `middle`."""
        context = [self.sp.suf, *suffix, self.sp.pre, *prefix, self.sp.edit]
        n = len(middle)
        canvas_len = max(n, len(broken or ())) + max(4, math.ceil(0.25 * n))
        if broken is not None:
            canvas = torch.full((canvas_len,), self.sp.eoi, dtype=torch.long)
            canvas[: len(broken)] = torch.tensor(broken, dtype=torch.long)
            target = torch.full((canvas_len,), self.sp.eoi, dtype=torch.long)
            target[:n] = torch.tensor(middle, dtype=torch.long)
        else:
            res = edit_corrupt(
                torch.tensor(middle, dtype=torch.long), rng.uniform(0, self.cfg.max_edit_rate),
                canvas_len, self.sp.eoi, self.vocab, g,
            )
            canvas, target = res.canvas, res.target
        if rng.random() < 0.5:  # re-masked positions, as the repair sampler produces them
            canvas, _ = mask_corrupt(canvas, rng.uniform(0, 0.3), self.sp.mask, g)
        t_ctx = len(context)
        block_ids = torch.cat([torch.arange(t_ctx) // 32, torch.full((canvas_len,), 10_000)])
        noisy_index = torch.arange(t_ctx, t_ctx + canvas_len)
        # The canvas has no clean copy: nothing attends to it. Build the mask on the
        # context plus canvas and drop the unused clean canvas rows/columns.
        joint = self.kind == "joint"
        full = two_stream_mask(block_ids, noisy_index, causal_clean=joint)
        keep = torch.cat([torch.arange(t_ctx), torch.arange(t_ctx + canvas_len, t_ctx + 2 * canvas_len)])
        mask = full[keep][:, keep]
        targets = torch.cat([torch.full((t_ctx,), -100), target])
        weights = torch.cat([torch.zeros(t_ctx), torch.ones(canvas_len)])
        ar_rows = None
        if joint:  # the causal context also takes the next-token loss (its last row: none)
            ctx = torch.tensor(context)
            targets[: t_ctx - 1] = ctx[1:]
            weights[: t_ctx - 1] = self.cfg.ar_weight * canvas_len / max(1, t_ctx - 1)
            weights[t_ctx:] *= self.cfg.diffusion_weight
            ar_rows = torch.zeros(t_ctx + canvas_len, dtype=torch.bool)
            ar_rows[: t_ctx - 1] = True
        return Example(
            ids=torch.cat([torch.tensor(context), canvas]),
            positions=torch.arange(t_ctx + canvas_len),
            mask=mask,
            targets=targets,
            weights=weights,
            region=canvas_len,
            ar_rows=ar_rows,
            source=t_ctx,
        )

    def _ar_example(self, prefix, suffix, middle) -> Example:
        seq = torch.tensor([self.sp.suf, *suffix, self.sp.pre, *prefix, self.sp.mid, *middle, self.sp.eoi])
        n = seq.numel()
        targets = torch.cat([seq[1:], torch.tensor([-100])])
        return Example(
            ids=seq, positions=torch.arange(n), mask=causal_mask(n), targets=targets,
            weights=torch.ones(n), region=n - 1,
        )

    def examples(self, step: int, rank: int, batch_size: int, stage: int) -> list[Example]:
        """The examples of one step: a pure function of (seed, step, rank)."""
        rng = random.Random(f"{self.seed}/{step}/{rank}")
        g = torch.Generator().manual_seed(rng.getrandbits(63))
        return [self.example(rng, g, stage) for _ in range(batch_size)]

    def batch(self, step: int, rank: int, batch_size: int, stage: int) -> Batch:
        return collate(self.examples(step, rank, batch_size, stage), self.sp.pad)


def infill_block_ids(n_context: int, n_middle: int, block: int) -> torch.Tensor:
    """(T,) block ids: the context in blocks of `block` from its start (the last one may be
    short), then the middle starting a fresh block, as the sampler sees them."""
    n_ctx_blocks = math.ceil(n_context / block)
    return torch.cat([torch.arange(n_context) // block, n_ctx_blocks + torch.arange(n_middle) // block])


def masked_infill_example(
    context: list[int], mid: list[int], block: int, masked: torch.Tensor, weights: torch.Tensor,
    mask_id: int, *, noisy_from: int | None = None, scored: torch.Tensor | None = None,
) -> Example:
    """Two-stream (BD3-LM) example: the clean sequence, then a noisy copy of its positions
    from `noisy_from` on (default: the middle only) with `masked` hidden.

    mid: the padded middle (whole blocks); masked, weights: (n,) for the n noisy positions,
    weights are the loss weights of masked positions. Targets are the clean tokens at the
    masked positions, or only at `scored` ((n,) bool, a subset of `masked`) when given.
    """
    seq = context + mid
    t_all = len(seq)
    start = len(context) if noisy_from is None else noisy_from
    n = t_all - start
    block_ids = infill_block_ids(len(context), len(mid), block)
    clean = torch.tensor(seq)
    noisy_index = torch.arange(start, t_all)
    noisy = torch.where(masked, torch.full((n,), mask_id), clean[noisy_index])
    scored = masked if scored is None else scored & masked
    targets = torch.full((t_all + n,), -100)
    targets[t_all:] = torch.where(scored, clean[noisy_index], torch.full((n,), -100))
    w = torch.zeros(t_all + n)
    w[t_all:] = torch.where(scored, weights, torch.zeros(n))
    return Example(
        ids=torch.cat([clean, noisy]),
        positions=torch.cat([torch.arange(t_all), noisy_index]),
        mask=two_stream_mask(block_ids, noisy_index),
        targets=targets,
        weights=w,
        region=n,
        source=t_all,
    )


def collate(examples: list[Example], pad_id: int) -> Batch:
    length = max(e.ids.numel() for e in examples)
    b = len(examples)
    ids = torch.full((b, length), pad_id, dtype=torch.long)
    positions = torch.zeros(b, length, dtype=torch.long)
    mask = torch.eye(length, dtype=torch.bool).repeat(b, 1, 1)  # pads attend to themselves only
    targets = torch.full((b, length), -100, dtype=torch.long)
    weights = torch.zeros(b, length)
    has_ar = any(e.ar_rows is not None for e in examples)
    ar_rows = torch.zeros(b, length, dtype=torch.bool) if has_ar else None
    for i, e in enumerate(examples):
        n = e.ids.numel()
        ids[i, :n], positions[i, :n], targets[i, :n], weights[i, :n] = e.ids, e.positions, e.targets, e.weights
        mask[i, :n, :n] = e.mask
        if ar_rows is not None and e.ar_rows is not None:
            ar_rows[i, :n] = e.ar_rows
    return Batch(
        ids, positions, mask, targets, weights,
        region=sum(e.region for e in examples), ar_rows=ar_rows,
    )
