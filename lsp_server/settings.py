"""Server settings (section "diffusionLsp"): parsing, validation and defaults.

Settings arrive as `initializationOptions` and with `workspace/didChangeConfiguration`.
`parse_settings` never raises: an unknown key or an invalid value produces a message
for the user and the default (or the previous) value is kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SECTION = "diffusionLsp"
LOG_LEVELS = ("error", "warning", "info", "debug")


def _opt_str(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ValueError("expected a string (a path) or null")
    return v


_opt_str.schema = {"type": ["string", "null"]}


def _device(v: Any) -> str:
    if not isinstance(v, str) or not (v == "cpu" or v == "cuda" or v.startswith("cuda:")):
        raise ValueError('expected "cpu" or "cuda"')
    return v


_device.schema = {"type": "string"}


def _int_in(lo: int, hi: int):
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v or not lo <= v <= hi:
            raise ValueError(f"expected an integer in {lo}..{hi}")
        return int(v)

    check.schema = {"type": "integer", "minimum": lo, "maximum": hi}
    return check


def _float_in(lo: float, hi: float):
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise ValueError(f"expected a number in [{lo}, {hi}]")
        return float(v)

    check.schema = {"type": "number", "minimum": lo, "maximum": hi}
    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


_bool.schema = {"type": "boolean"}


def _level(v: Any) -> str:
    if not isinstance(v, str) or v.lower() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return v.lower()


_level.schema = {"type": "string", "enum": list(LOG_LEVELS)}


def _quantize(v: Any) -> str:
    if v not in QUANTIZE:
        raise ValueError(f"expected one of {', '.join(QUANTIZE)}")
    return v


QUANTIZE = ("none", "int8")
_quantize.schema = {"type": "string", "enum": list(QUANTIZE)}


def _setting(default: Any, check) -> Any:
    """A field of `Settings`: its default and the check of a client's value."""
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class Settings:
    """The one declaration of the settings: each field is a setting, its JSON key the
    field name in camelCase (`KEYS`), its check in the field's metadata (`CHECKS`). The
    editor clients' tables are tested against it (tests/e2e/test_client_settings.py)."""

    model_path: str | None = _setting(None, _opt_str)  # None: the embedded default model
    device: str = _setting("cpu", _device)
    # "int8": dynamic int8 Linear layers (CPU only; diffusion_core.quantize), for big models
    quantize: str = _setting("none", _quantize)
    block_size: int = _setting(0, _int_in(0, 512))  # 0: the model's trained block size, else 32
    threshold: float = _setting(0.9, _float_in(0.0, 1.0))
    max_tokens: int = _setting(64, _int_in(1, 8192))
    latency_budget_ms: float = _setting(0.0, _float_in(0.0, 60_000.0))  # 0: no budget
    # a suggestion stops where the model's probability of it falls below this (0: never)
    min_probability: float = _setting(0.1, _float_in(0.0, 1.0))
    token_healing: bool = _setting(True, _bool)
    # explicit requests (Ctrl-Space, an invoked inline suggestion): rank the greedy line and
    # this many more lines by the code after the cursor and offer them best first (0: greedy)
    completion_candidates: int = _setting(6, _int_in(0, 16))
    cache_budget_mb: float = _setting(256.0, _float_in(0.0, 1 << 20))
    cache_dir: str | None = _setting(None, _opt_str)  # None: no spill to disk
    # spill directory budget (0: no limit), oldest go first
    cache_dir_max_mb: float = _setting(1024.0, _float_in(0.0, 1 << 24))
    # spill files older than this are deleted (0: never)
    cache_dir_max_age_days: float = _setting(7.0, _float_in(0.0, 36500.0))
    enable_completion: bool = _setting(True, _bool)
    enable_inline_completion: bool = _setting(True, _bool)
    enable_repair: bool = _setting(True, _bool)
    # underline names that are probably misspelt (DL003), using the model when typing pauses
    name_diagnostics: bool = _setting(True, _bool)
    log_level: str = _setting("info", _level)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, attr) for key, attr in KEYS.items()}


def _camel(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(w.capitalize() for w in rest)


# JSON key -> attribute, and attribute -> check: both read off the declaration
KEYS = {_camel(f.name): f.name for f in dataclasses.fields(Settings)}
CHECKS = {f.name: f.metadata["check"] for f in dataclasses.fields(Settings)}


def schema() -> dict[str, dict[str, Any]]:
    """JSON key -> JSON-schema fragment (type, range, enum) and default, from the checks."""
    return {key: {**CHECKS[attr].schema, "default": getattr(Settings(), attr)}
            for key, attr in KEYS.items()}


def unwrap_section(data: Any) -> Any:
    """Accept {"diffusionLsp": {...}} as well as the bare {...}."""
    if isinstance(data, dict) and isinstance(data.get(SECTION), dict):
        return data[SECTION]
    return data


def parse_settings(data: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings from a JSON object on top of `base`; returns (settings, problems).

    Keys missing from `data` keep the value of `base` (defaults for a fresh server).
    """
    base = base or Settings()
    data = unwrap_section(data)
    if data is None:
        return base, []
    if not isinstance(data, dict):
        return base, [f"{SECTION} settings must be an object, got {type(data).__name__}; using defaults"]
    problems: list[str] = []
    changes: dict[str, Any] = {}
    for key, value in data.items():
        attr = KEYS.get(key)
        if attr is None:
            problems.append(f"unknown setting {SECTION}.{key} (known: {', '.join(KEYS)}); ignored")
            continue
        try:
            changes[attr] = CHECKS[attr](value)
        except ValueError as e:
            default = getattr(Settings(), attr)
            problems.append(
                f"invalid {SECTION}.{key} = {value!r}: {e}; using {getattr(base, attr)!r}"
                + ("" if getattr(base, attr) == default else f" (default {default!r})")
            )
    return base.replace(**changes), problems
