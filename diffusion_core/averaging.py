"""Uniform weight averaging of model directories of one network: the average of a run's
last checkpoints, in the place of its last one (checkpoint averaging as in Vaswani et al.
2017, which averaged the last 5-20 checkpoints; along a run at a high learning rate it
stands in for the decayed end of the schedule, Sanyal et al. 2023 "LAWA").

Every input must have the same config and the same tokenizer (byte for byte): weights of
different shapes or vocabularies do not average. The mean is taken in float32 and saved
as every model directory is (fp16, `checkpoint.save_model_dir`), with a `training.json`
that is the last input's record plus `averaged_from`, one entry per input.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusion_core.checkpoint import file_digest, load_model_dir, read_json_file, save_model_dir
from diffusion_core.model import CodeTransformer


def average_model_dirs(dirs: list[Path], out: Path) -> dict:
    """Write the mean of the weights in `dirs` to `out` (which must not exist or be empty,
    and is none of the inputs); returns its training record."""
    dirs = [Path(d) for d in dirs]
    out = Path(out)
    if len(dirs) < 2:
        raise ValueError("averaging needs at least two model directories")
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise ValueError("a model directory is listed twice")
    if any(out.resolve() == d.resolve() for d in dirs):
        raise ValueError(f"{out} is one of the inputs: the average goes to a new directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty directory")
    first = load_model_dir(dirs[0])
    tok_digest = file_digest(dirs[0] / "tokenizer.json").hexdigest()
    total = {k: v.detach().float().clone() for k, v in first.model.state_dict().items()}
    for d in dirs[1:]:
        other = load_model_dir(d)
        if other.model.cfg != first.model.cfg:
            raise ValueError(f"{d} has another config than {dirs[0]}: only one network's weights average")
        if file_digest(d / "tokenizer.json").hexdigest() != tok_digest:
            raise ValueError(f"{d} has another tokenizer than {dirs[0]}")
        for k, v in other.model.state_dict().items():
            total[k] += v.float()
    model = CodeTransformer(first.model.cfg)
    model.load_state_dict({k: v / len(dirs) for k, v in total.items()}, strict=True)
    save_model_dir(model.eval(), first.tokenizer, out)
    records = [_record(d) for d in dirs]
    record = dict(records[-1])
    record["averaged_from"] = [
        {"path": str(d), **{k: r[k] for k in ("steps", "tokens") if k in r}}
        for d, r in zip(dirs, records, strict=True)
    ]
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _record(d: Path) -> dict:
    path = d / "training.json"
    if not path.is_file():
        return {}
    raw = read_json_file(path, "training record")
    return raw if isinstance(raw, dict) else {}

