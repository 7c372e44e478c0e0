"""Parsing helpers shared by the ``kinebridge`` subcommands (each value's error names the option)."""

from __future__ import annotations


def floats(text: str, n: int, name: str) -> tuple:
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{name}: expected {n} comma-separated numbers, got {text!r}") from None
    if len(v) != n:
        raise ValueError(f"{name}: expected {n} comma-separated numbers, got {len(v)} in {text!r}")
    return v


def rates_hz(text: str, name: str = "--rates", lo: float = 10.0) -> tuple:
    """Comma-separated rates in Hz, each within ``lo``..500 Hz (the arm's streaming range)."""
    try:
        rates = tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated numbers in Hz, got {text!r}") from None
    if not rates:
        raise ValueError(f"{name}: expected comma-separated numbers in Hz, got {text!r}")
    from kinebridge.drivers.arm.limits import check_rate_hz
    return tuple(check_rate_hz(r, name, lo=lo) for r in rates)
