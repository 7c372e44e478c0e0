"""The control node's clock seen from a producer on another machine: the least-delayed live stamp."""

from __future__ import annotations

import numpy as np
import pytest

from kinebridge.runtime.trajectory.clock_sync import ControlClock


def test_offset_is_the_least_delayed_sample_and_never_ahead_of_the_truth():
    rng = np.random.default_rng(3)
    true_offset = -5321.25                       # the control machine booted ~1.5 h after this one
    clock = ControlClock(window=64)
    latencies = 50_000 + rng.exponential(400_000, size=200).astype(np.int64)   # ns, ≥ 50 µs
    for k, lat in enumerate(latencies):
        stamp_local = 1_000_000_000_000 + k * 5_000_000          # published every 5 ms
        clock.observe(stamp_local + int(true_offset * 1e9), stamp_local + lat)
    least = latencies[-64:].min() * 1e-9
    assert clock.offset_s == pytest.approx(true_offset - least, abs=1e-9)
    assert clock.offset_s <= true_offset
    assert clock.to_control(10.0) == pytest.approx(10.0 + true_offset - least)


def test_a_backlog_read_back_to_back_does_not_count():
    """Messages that queued while the node was busy arrive µs apart although published 5 ms apart: their
    samples would put the clock seconds behind; only live samples count."""
    clock = ControlClock()
    t = 10_000_000_000
    for k in range(400):                       # 2 s of state queued, read in 8 ms at the end
        assert not clock.observe(t + k * 5_000_000, t + 2_000_000_000 + k * 20_000) or k == 0
    assert not clock.synced and clock.skipped == 399
    with pytest.raises(RuntimeError, match="control/state"):
        clock.now()
    # live again: published every 5 ms, received 80 µs after publishing
    for k in range(400, 403):
        clock.observe(t + k * 5_000_000, t + k * 5_000_000 + 80_000)
    assert not clock.synced                    # 2 live samples so far: one could be a delayed straggler
    clock.observe(t + 403 * 5_000_000, t + 403 * 5_000_000 + 80_000)
    assert clock.synced and clock.offset_s == pytest.approx(-80e-6)


def test_the_window_forgets_old_samples():
    clock = ControlClock(window=4, min_live=1)
    clock.observe(0, 0)
    clock.observe(5_000_000 + 10_000_000, 5_000_000)     # live, 10 ms "ahead": later ones never match it
    for k in range(2, 6):
        clock.observe(k * 5_000_000 + 1_000_000, k * 5_000_000)
    assert clock.offset_s == pytest.approx(0.001)


def test_before_any_state_the_clock_is_unknown():
    clock = ControlClock()
    assert not clock.synced
    with pytest.raises(RuntimeError, match="control/state"):
        clock.now()
    assert not clock.observe(5, 0)               # one sample: nothing to tell live from backlog yet
    with pytest.raises(ValueError, match="window"):
        ControlClock(window=0)
    with pytest.raises(ValueError, match="min_live"):
        ControlClock(window=2, min_live=3)
