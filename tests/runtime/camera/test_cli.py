"""`kinebridge bench camera` and `kinebridge world` on the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _cli(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "kinebridge.runtime.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_bench_camera_measures_the_shared_memory_hop(tmp_path):
    out = tmp_path / "camera.json"
    r = _cli("bench", "camera", "--parts", "hop", "--seconds", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    hop = json.loads(out.read_text())["hop"]["normal"]
    assert hop["frames"] >= 25 and hop["lost"] == 0 and hop["size"] == "640x480"
    assert 0 < hop["hop_us"]["p50"] < 50_000 and hop["write_us"]["p50"] > 0
    assert "shm hop 640x480" in r.stdout


def test_bench_camera_refuses_unknown_parts():
    r = _cli("bench", "camera", "--parts", "render,nope")
    assert r.returncode == 2 and "--parts" in r.stderr and "nope" in r.stderr


def test_kinebridge_world_prints_a_seeded_scene():
    pytest.importorskip("mujoco")
    r = _cli("world", "--seed", "3", "--mugs", "2", "--distractors", "1", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout)
    assert info["seed"] == 3 and {o["name"] for o in info["objects"]} >= {"mug0", "mug1"}
    h = _cli("world", "--help")
    assert h.returncode == 0 and "--snapshot" in h.stdout
    assert _cli("world", "--size", "5x5").returncode == 2
