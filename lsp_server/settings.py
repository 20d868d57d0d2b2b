"""Server settings (section "diffusionLsp"): parsing, validation and defaults.

Settings arrive as `initializationOptions` and with `workspace/didChangeConfiguration`.
`parse_settings` never raises: an unknown key or an invalid value produces a message
for the user and the default (or the previous) value is kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SECTION = "diffusionLsp"
LOG_LEVELS = ("error", "warning", "info", "debug")


@dataclass(frozen=True)
class Settings:
    model_path: str | None = None  # None: the embedded default model
    device: str = "cpu"
    block_size: int = 32
    threshold: float = 0.9
    max_tokens: int = 64
    latency_budget_ms: float = 0.0  # 0: no budget
    token_healing: bool = True
    cache_budget_mb: float = 256.0
    cache_dir: str | None = None  # None: no spill to disk
    cache_dir_max_mb: float = 1024.0  # spill directory budget (0: no limit), oldest go first
    cache_dir_max_age_days: float = 7.0  # spill files older than this are deleted (0: never)
    enable_completion: bool = True
    enable_inline_completion: bool = True
    enable_repair: bool = True
    log_level: str = "info"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, attr) for key, attr in KEYS.items()}


# JSON key -> attribute
KEYS = {
    "modelPath": "model_path",
    "device": "device",
    "blockSize": "block_size",
    "threshold": "threshold",
    "maxTokens": "max_tokens",
    "latencyBudgetMs": "latency_budget_ms",
    "tokenHealing": "token_healing",
    "cacheBudgetMb": "cache_budget_mb",
    "cacheDir": "cache_dir",
    "cacheDirMaxMb": "cache_dir_max_mb",
    "cacheDirMaxAgeDays": "cache_dir_max_age_days",
    "enableCompletion": "enable_completion",
    "enableInlineCompletion": "enable_inline_completion",
    "enableRepair": "enable_repair",
    "logLevel": "log_level",
}


def _opt_str(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ValueError("expected a string (a path) or null")
    return v


def _device(v: Any) -> str:
    if not isinstance(v, str) or not (v == "cpu" or v == "cuda" or v.startswith("cuda:")):
        raise ValueError('expected "cpu" or "cuda"')
    return v


def _int_in(lo: int, hi: int):
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v or not lo <= v <= hi:
            raise ValueError(f"expected an integer in {lo}..{hi}")
        return int(v)

    return check


def _float_in(lo: float, hi: float):
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise ValueError(f"expected a number in [{lo}, {hi}]")
        return float(v)

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _level(v: Any) -> str:
    if not isinstance(v, str) or v.lower() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return v.lower()


CHECKS = {
    "model_path": _opt_str,
    "device": _device,
    "block_size": _int_in(1, 512),
    "threshold": _float_in(0.0, 1.0),
    "max_tokens": _int_in(1, 8192),
    "latency_budget_ms": _float_in(0.0, 60_000.0),
    "token_healing": _bool,
    "cache_budget_mb": _float_in(0.0, 1 << 20),
    "cache_dir": _opt_str,
    "cache_dir_max_mb": _float_in(0.0, 1 << 24),
    "cache_dir_max_age_days": _float_in(0.0, 36500.0),
    "enable_completion": _bool,
    "enable_inline_completion": _bool,
    "enable_repair": _bool,
    "log_level": _level,
}


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
