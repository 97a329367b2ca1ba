"""Cost per image: the recorded stage times priced by where each stage ran ([cost])."""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stages.errors import ConfigError

MS_PER_HOUR = 3_600_000.0
DIGITS = 8  # amounts are kept to 1e-8 of the currency unit: one CPU-second is ~1e-5 USD


@dataclass(frozen=True)
class CostOptions:
    """[cost]: the prices that turn stage times into money (README: Cost)."""

    currency: str = "USD"  # a label for the amounts (ISO 4217 code); nothing is converted
    gpu_per_hour: float = 1.00  # one GPU: on-demand price of a single-GPU cloud instance (A10G/L4 class)
    cpu_core_per_hour: float = 0.045  # one core (vCPU) of an on-demand compute-optimised instance
    api_per_call: dict[str, float] = field(default_factory=dict)  # backend name -> price of one call

    def check(self, where: str) -> None:
        if not re.fullmatch(r"[A-Z]{3}", self.currency):
            raise ConfigError(f"{where}.currency = {self.currency!r}: expected a 3-letter code such as 'USD'")
        for key in ("gpu_per_hour", "cpu_core_per_hour"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{where}.{key} = {value}: must be a price >= 0")
        for name, price in self.api_per_call.items():
            if not (math.isfinite(price) and price >= 0):
                raise ConfigError(f"{where}.api_per_call.{name} = {price}: must be a price >= 0")


def product_cost(timings_ms: Mapping[str, float], gpu_ms: Mapping[str, float], calls: Mapping[str, int],
                 prices: CostOptions) -> dict[str, Any]:
    """What staging one product cost: in total, per stage and per hosted backend.

    The model is simple on purpose, so that anyone can redo the sum from the record:
    - each stage's time (`timings_ms`: wall time measured around the stage, waiting included)
      is billed at `gpu_per_hour` for the part of it that ran on a CUDA device (`gpu_ms`, at most
      the stage's time) and at `cpu_core_per_hour` for the rest: a worker process stages one
      product at a time on one core, and a GPU stage bills the GPU only (the host's cores are
      part of a GPU instance's price);
    - a hosted backend adds `api_per_call[name]` for each of its `calls`; backends without a
      price (every embedded and local one) add nothing.
    Products that were not staged (unchanged and skipped, or kept by a reviewer's decision) are
    never priced: they cost 0. The result is JSON-simple; amounts are rounded to 8 decimals.
    """
    stages: dict[str, float] = {}
    devices: dict[str, str] = {}
    on_gpu: dict[str, float] = {}
    for step, ms in timings_ms.items():
        ms = max(float(ms), 0.0)
        gpu = min(max(float(gpu_ms.get(step, 0.0)), 0.0), ms)
        stages[step] = (gpu * prices.gpu_per_hour + (ms - gpu) * prices.cpu_core_per_hour) / MS_PER_HOUR
        devices[step] = "cuda" if gpu > 0 else "cpu"
        if gpu > 0:
            on_gpu[step] = round(gpu, 2)
    api = {name: n * prices.api_per_call[name] for name, n in sorted(calls.items())
           if n and name in prices.api_per_call}
    total = sum(stages.values()) + sum(api.values())
    return {
        "currency": prices.currency, "total": round(total, DIGITS),
        "stages": {k: round(v, DIGITS) for k, v in stages.items()},
        "api": {k: round(v, DIGITS) for k, v in api.items()},
        "calls": {k: n for k, n in sorted(calls.items()) if n}, "devices": devices, "gpu_ms": on_gpu,
    }


def quantile(sorted_values: list[float] | array, q: float) -> float:
    """The q-quantile (0..1) of ascending values, linearly interpolated; 0.0 for none."""
    n = len(sorted_values)
    if n == 0:
        return 0.0
    pos = q * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class RunCost:
    """A run's cost, summed row by row as results arrive: total, per stage (time, share, cost) and
    per SKU (median, p90). Only staged rows count (they carry a `cost`); unchanged rows cost 0 and
    are counted apart."""

    def __init__(self, currency: str = CostOptions.currency) -> None:
        self.currency = currency
        self.total = 0.0
        self.stage_ms: Counter[str] = Counter()
        self.stage_cost: Counter[str] = Counter()
        self.api_cost: Counter[str] = Counter()
        self.per_sku = array("d")
        self.unpriced = 0  # cached, held and stopped rows, and failures with no recorded time

    def add(self, result: Mapping[str, Any]) -> None:
        cost = result.get("cost")
        if not cost or result.get("status") in ("cached", "stopped"):
            self.unpriced += 1
            return
        self.currency = cost.get("currency", self.currency)
        self.total += float(cost["total"])
        self.per_sku.append(float(cost["total"]))
        self.stage_ms.update({k: float(v) for k, v in (result.get("timings_ms") or {}).items()})
        self.stage_cost.update({k: float(v) for k, v in cost.get("stages", {}).items()})
        self.api_cost.update({k: float(v) for k, v in cost.get("api", {}).items()})

    def summary(self) -> dict[str, Any]:
        """JSON-simple: the run's cost, its per-SKU median and p90, and one entry per stage (slowest first)."""
        values = sorted(self.per_sku)
        all_ms = sum(self.stage_ms.values())
        stages = [{"stage": k, "ms": round(ms, 2), "share": round(ms / all_ms, 4) if all_ms else 0.0,
                   "cost": round(self.stage_cost.get(k, 0.0), DIGITS)}
                  for k, ms in sorted(self.stage_ms.items(), key=lambda kv: (-kv[1], kv[0]))]
        return {
            "currency": self.currency, "total": round(self.total, DIGITS), "priced_rows": len(values),
            "unpriced_rows": self.unpriced,
            "per_sku": {"mean": round(self.total / len(values), DIGITS) if values else 0.0,
                        "median": round(quantile(values, 0.5), DIGITS), "p90": round(quantile(values, 0.9), DIGITS)},
            "stages": stages, "api": {k: round(v, DIGITS) for k, v in sorted(self.api_cost.items())},
        }


def money(amount: float, currency: str) -> str:
    """An amount as people read it: cents for a run, more digits for the fractions of a cent an image costs."""
    if amount == 0:
        return f"0.00 {currency}"
    digits = 2 if abs(amount) >= 1 else 4 if abs(amount) >= 0.01 else 6
    return f"{amount:.{digits}f} {currency}"
