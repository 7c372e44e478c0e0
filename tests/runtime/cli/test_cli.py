"""The `kinebridge` command line: help everywhere, the kernel benchmark on a quick configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "kinebridge.runtime.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.mark.parametrize("args, expect", [
    ((), "eval"), (("eval",), "lasa"), (("eval", "lasa"), "--random-cases"), (("bench",), "kernels"),
    (("bench", "kernels"), "--repeats"), (("bench", "arm"), "--rates"), (("sim",), "--push-port"),
])
def test_help_explains_every_command(args, expect):
    r = _cli(*args, "--help")
    assert r.returncode == 0 and expect in r.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("kinebridge")   # the entry point beside this interpreter
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "kinebridge" in r.stdout


def test_missing_subcommand_is_an_error():
    r = _cli()
    assert r.returncode == 2 and "required" in r.stderr


def test_bench_kernels_quick_writes_every_kernel(tmp_path):
    out = tmp_path / "kernels.json"
    r = _cli("bench", "kernels", "--quick", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    expected = {"gmr_1000_cov", "em_1400x5_k8", "kmp_fit_n400_d4", "kmp_via_move", "kmp_via_new_time",
                "lfe_generalize_2frames_200_pos_ori"}
    assert expected <= set(res["kernels"])
    for k in res["kernels"].values():
        assert k["kernel"]["p50"] > 0 and k["reference"]["p50"] > 0 and k["ratio"] > 0


def test_bench_golden_reports_parity_with_the_original(tmp_path):
    from tests.conftest import shared_file
    data = shared_file("golden_kmp_letterG.npz").parent
    out = tmp_path / "golden.json"
    r = _cli("bench", "golden", "--data", str(data), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["em_iterations"] == 37 and all(res["within_tolerance"].values())
    r = _cli("bench", "golden", "--data", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert r.returncode == 2 and "golden_kmp_letterG.npz not found" in r.stderr


def test_bench_arm_streams_through_the_sdk_without_dropping(tmp_path):
    out = tmp_path / "arm.json"
    r = _cli("bench", "arm", "--quick", "--rates", "200,500", "--seconds", "0.5", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["kinematics"]
    rows = res["streaming"]["rates"]
    assert [row["rate_hz"] for row in rows] == [200.0, 500.0]
    for row in rows:
        assert row["stream_errors"] == []
        assert row["sent"] == row["received"] == row["accepted"] > 0
        assert row["checksum_match"]
        assert row["command_to_push_ms"]["n"] > 0


@pytest.mark.parametrize("args, field", [(("--rates", "900"), "--rates"), (("--rates", "fast"), "--rates"),
                                         (("--seconds", "0"), "--seconds")])
def test_bench_arm_rejects_bad_options(args, field):
    r = _cli("bench", "arm", *args)
    assert r.returncode == 2 and field in r.stderr


def test_bench_runtime_quick_writes_every_section(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "rt.json"
    proc = subprocess.run([sys.executable, "-m", "kinebridge.runtime.cli.main", "bench", "runtime", "--quick", "--rates",
                           "200", "--seconds", "2", "--no-plot", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["codec"]["chunk_50x7"]["encode_decode_us"] > 0
    assert r["bus_hop_us"]["codec"]["received"] == r["bus_hop_us"]["codec"]["sent"]
    loops = r["control_loop"]
    assert [x["loaded"] for x in loops] == [False, True] and all(not x["failed"] for x in loops)
    assert all(x["period_error_us"]["n"] > 100 for x in loops)
    assert loops[1]["restart_s"] and loops[1]["tasks"] >= 1
    assert r["cold_start"]["median_s"] > 0
    (host,) = r["host_wakeup"]                          # the bare real-time loop measured as the baseline
    assert host["rate_hz"] == 200 and host["period_error_us"]["n"] == 400 and host["period_error_us"]["p50"] >= 0
    assert "host baseline" in proc.stdout
