"""The host baseline of `kinebridge bench runtime`: a bare real-time loop's wake-up errors."""

import pytest

from kinebridge.bench import host_wakeup


def test_the_bare_loop_reports_its_wake_up_errors_in_a_child_process():
    r = host_wakeup.measure_in_child(200.0, 0.5, priority=0)
    pe = r["period_error_us"]
    assert r["rate_hz"] == 200.0 and pe["n"] == 100
    assert 0 <= pe["p50"] <= pe["p99"] <= pe["max"]
    assert r["granted"].startswith("normal scheduling")
    assert 0 <= r["misses_over_1ms"] <= pe["n"]


def test_a_bad_duration_is_refused():
    with pytest.raises(ValueError, match="seconds must be positive"):
        host_wakeup.measure(200.0, 0.0)
