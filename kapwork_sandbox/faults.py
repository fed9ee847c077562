"""Fault injection: what goes wrong with which request, decided by a seeded RNG."""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time

KINDS = ("drop", "error", "rate_limit", "truncate", "html", "missing_data", "trickle")


@dataclasses.dataclass
class Faults:
    latency_ms: float = 0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    rate_limit_rps: float | None = None
    retry_after: float = 1
    retry_after_format: str = "seconds"
    truncate_rate: float = 0.0
    drop_rate: float = 0.0
    html_rate: float = 0.0
    missing_data_rate: float = 0.0
    # A trickled answer sends its body `trickle_bytes` at a time, `trickle_interval_ms` apart.
    trickle_rate: float = 0.0
    trickle_bytes: int = 16
    trickle_interval_ms: float = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.retry_after_format not in ("seconds", "http-date"):
            raise ValueError("retry_after_format is 'seconds' or 'http-date'")


class FaultPlan:
    """Thread-safe: `decide()` names the fault for the next API request, or None."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.configure()

    def configure(self, **settings: object) -> Faults:
        faults = Faults(**settings)  # type: ignore[arg-type]  # TypeError on unknown names
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self._tokens = faults.rate_limit_rps or 0.0
            self._refilled = time.monotonic()
        return faults

    def decide(self) -> tuple[str | None, float]:
        """(fault kind or None, Retry-After seconds for a rate limit)."""
        with self._lock:
            f = self.faults
            if f.rate_limit_rps:
                now = time.monotonic()
                self._tokens = min(
                    f.rate_limit_rps, self._tokens + (now - self._refilled) * f.rate_limit_rps
                )
                self._refilled = now
                if self._tokens < 1:
                    return "rate_limit", max(1.0, math.ceil((1 - self._tokens) / f.rate_limit_rps))
                self._tokens -= 1
            rates = (
                f.drop_rate,
                f.error_rate,
                f.rate_limit_rate,
                f.truncate_rate,
                f.html_rate,
                f.missing_data_rate,
                f.trickle_rate,
            )
            for kind, rate in zip(KINDS, rates, strict=True):
                if rate and self._rng.random() < rate:
                    return kind, float(f.retry_after)
            return None, 0.0

    def pick_error_status(self) -> int:
        with self._lock:
            return self._rng.choice([500, 502, 503, 504])
