"""Perception runs on the robot without torch: the session, the model loader, the decoder, the node,
the candidates and the evaluation import with torch, transformers and peft made impossible."""

import subprocess
import sys

from tests.test_layering import blocked_training_env

MODULES = ["kinebridge.export.session", "kinebridge.export.keypoints.model", "kinebridge.export.keypoints.decode",
           "kinebridge.export.keypoints.data", "kinebridge.export.keypoints.evaluate",
           "kinebridge.export.keypoints.metrics", "kinebridge.runtime.perception.node",
           "kinebridge.runtime.perception.pipeline", "kinebridge.runtime.perception.detector",
           "kinebridge.runtime.perception.candidates", "kinebridge.runtime.perception.tracking",
           "kinebridge.runtime.perception.config", "kinebridge.runtime.cli.perception",
           "kinebridge.bench.perception_bench"]


def test_perception_imports_and_runs_without_torch(tmp_path):
    code = ("import importlib, sys\n"
            f"for m in {MODULES!r}:\n    importlib.import_module(m)\n"
            "from kinebridge.export.keypoints.model import DEFAULT_MODEL, load\n"
            "if DEFAULT_MODEL.exists():\n"
            "    import numpy as np\n"
            "    m = load(threads=1)\n"
            "    m.detect(np.zeros((480, 640, 3), np.uint8), np.ones((480, 640), np.float32))\n"
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], env=blocked_training_env(tmp_path), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_the_control_path_does_not_import_perception(tmp_path):
    """Only the [perception] config model (pydantic) is read with the runtime config."""
    code = ("import sys, kinebridge.runtime.control.node, kinebridge.runtime.trajectory.node\n"
            "print(sorted(m for m in sys.modules if m.startswith(('onnxruntime', 'kinebridge.runtime.perception.',"
            " 'kinebridge.export')) and m != 'kinebridge.runtime.perception.config'))")
    r = subprocess.run([sys.executable, "-c", code], env=blocked_training_env(tmp_path), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
