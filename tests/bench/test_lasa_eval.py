"""The LASA protocol (data, cases, frames, oracle) and `kinebridge eval lasa` end to end on a tiny
configuration, through the same command line a user runs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from kinebridge.bench import lasa_protocol as proto
from kinebridge.kernels import metrics


def test_all_thirty_shapes_load_with_seven_demos():
    names = proto.shape_names()
    assert len(names) == 30 and "GShape" in names
    demos = proto.load_demos("Sine", n_points=50)
    assert len(demos) == 7 and demos[0].position.shape == (50, 2)
    np.testing.assert_allclose(demos[0].t, 0.01 * np.arange(1, 51))
    np.testing.assert_allclose(demos[0].position[-1], 0, atol=1e-9)   # LASA demos end at the origin


def test_cases_are_deterministic_and_match_the_documented_draws():
    cases = proto.cases(10, 0)
    assert [c.name for c in cases[:7]] == ["identity", "translate +x", "translate -y", "start +x", "start +y",
                                           "end +x", "end -y"]
    np.testing.assert_allclose(cases[7].delta_start + cases[7].delta_end, (2.7392, -4.6043, -9.1805, -9.6694),
                               atol=1e-4)                               # kmp.md §7, first random case
    assert proto.cases(10, 0) == cases and proto.cases(10, 1) != cases


def test_oracle_is_the_similarity_transform_onto_the_new_endpoints():
    ref = np.column_stack([np.linspace(0, 10, 60), np.sin(np.linspace(0, 3, 60))])
    start, end = np.array([3.0, -2.0]), np.array([-4.0, 7.0])
    o = proto.oracle(ref, start, end)
    np.testing.assert_allclose(o[0], start, atol=1e-12)
    np.testing.assert_allclose(o[-1], end, atol=1e-12)
    assert metrics.topological_similarity(o, proto.oracle(o, start, end)) == pytest.approx(1.0)
    d_ref = np.linalg.norm(np.diff(ref, axis=0), axis=1)
    d_o = np.linalg.norm(np.diff(o, axis=0), axis=1)
    np.testing.assert_allclose(d_o / d_ref, np.linalg.norm(end - start) / np.linalg.norm(ref[-1] - ref[0]))


def test_frames_point_from_start_to_end():
    f = proto.frames_for([1.0, 1.0], [1.0, 5.0])
    np.testing.assert_allclose(f[0].rotation @ [1, 0], [0, 1], atol=1e-12)
    np.testing.assert_allclose(f[1].origin, [1, 5])


def _run(*args, tmp_path):
    return subprocess.run([sys.executable, "-m", "kinebridge.runtime.cli.main", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)


def test_eval_lasa_command_writes_results_and_figures(tmp_path):
    out = tmp_path / "lasa"
    r = _run("eval", "lasa", "--shapes", "GShape,Sine", "--random-cases", "2", "--methods", "kmp,tp-gmm,lfe-kmp",
             "--out", str(out), tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "LASA GShape" in r.stdout and "mean c_s" in r.stdout
    res = json.loads((out / "lasa_eval.json").read_text())
    assert [s["shape"] for s in res["shapes"]] == ["GShape", "Sine"]
    assert (out / "lasa_GShape.png").stat().st_size > 10_000 and (out / "lasa_all_shapes.png").exists()
    for shape in res["shapes"]:
        assert set(shape["methods"]) == {"kmp", "tp-gmm", "lfe-kmp"}
        lfe = shape["methods"]["lfe-kmp"]
        assert len(lfe["cases"]) == 9 and lfe["perturbed"]["n_cases"] == 8 and lfe["random"]["n_cases"] == 2
        # the property LFE-KMP exists for: the new task parameters are reached exactly
        assert lfe["perturbed"]["start_error_max"] < 0.01 and lfe["perturbed"]["end_error_max"] < 0.01
        # TP-GMM's product does not pin the endpoints
        assert shape["methods"]["tp-gmm"]["perturbed"]["end_error_max"] > 0.01
        for m in shape["methods"].values():
            for row in m["cases"]:
                assert -1 <= row["c_s"] <= 1 and row["kappa_s"] >= 0 and np.isfinite(row["frechet"])


def test_eval_lasa_rejects_unknown_shapes_and_methods(tmp_path):
    r = _run("eval", "lasa", "--shapes", "QShape", tmp_path=tmp_path)
    assert r.returncode != 0 and "unknown LASA shape 'QShape'" in r.stderr
    r = _run("eval", "lasa", "--methods", "kmp,dmp", tmp_path=tmp_path)
    assert r.returncode != 0 and "unknown method 'dmp'" in r.stderr
