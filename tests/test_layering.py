"""The dependency direction of docs/architecture.md, checked on the source and by importing:

* ``kernels`` import only numpy, numba, scipy, the standard library and other kernels;
* ``drivers`` never import ``runtime`` or ``bench``;
* ``runtime`` never imports ``bench`` (its command line, which runs the benchmarks, excepted);
* the control path — the control node, the drivers, the kernels, the bus codec — runs without torch,
  transformers or peft: it imports with those made impossible to import;
* no topic name is written as a literal outside the message registry.

Each static rule is also run on a small file that breaks it, so a rule that can no longer fail is noticed.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)
NUMERICAL = {"numpy", "numba", "scipy"}
TRAINING = ("torch", "transformers", "peft")


def _imports(path: Path):
    """(line, module) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def _py(folder: str):
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def kernel_violations(paths) -> list[str]:
    bad = []
    for path in paths:
        for line, name in _imports(path):
            root = name.split(".")[0]
            if root == "kinebridge":
                if not name.startswith("kinebridge.kernels"):
                    bad.append(f"{path.name}:{line}: {name}")
            elif root not in NUMERICAL | STDLIB:
                bad.append(f"{path.name}:{line}: {name}")
    return bad


def forbidden_imports(paths, prefixes) -> list[str]:
    return [f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p.name}:{line}: {name}"
            for p in paths for line, name in _imports(p)
            if any(name == x or name.startswith(x + ".") for x in prefixes)]


TOPIC_CALLS = {"publish", "subscribe", "Subscriber", "encode", "read_recording", "spec_of", "body_of", "wire",
               "logical", "json_schema"}
TOPIC_KEYWORDS = {"topic", "topics", "listen"}


def topic_literals(paths, topics) -> list[str]:
    """String constants naming a registered topic where a topic is expected: compared with ``.topic``,
    passed to the bus (publish, subscribe, Subscriber, encode, read_recording, …) or as ``topic=`` /
    ``topics=`` / ``listen=`` (alone or in a tuple/list). Dictionary keys and words in text are not topics."""
    bad = []

    def consts(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            for e in node.elts:
                yield from consts(e)

    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        hits = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, ast.Attribute) and s.attr == "topic" for s in sides):
                    for s in sides:
                        hits += consts(s)
            elif isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if name in TOPIC_CALLS:
                    for a in node.args:
                        hits += consts(a)
                for kw in node.keywords:
                    if kw.arg in TOPIC_KEYWORDS:
                        hits += consts(kw.value)
        for c in hits:
            if c.value in topics:
                rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                bad.append(f"{rel}:{c.lineno}: {c.value!r}")
    return bad


# ------------------------------------------------------------------------------------------ rules
def test_kernels_import_only_numerical_libraries():
    assert not (bad := kernel_violations(_py("kernels"))), "kernels must not depend on: " + ", ".join(bad)


def test_drivers_never_import_runtime_or_bench():
    bad = forbidden_imports(_py("drivers"), ("kinebridge.runtime", "kinebridge.bench"))
    assert not bad, "drivers must not import runtime or bench: " + ", ".join(bad)


def test_runtime_never_imports_bench_outside_its_command_line():
    paths = [p for p in _py("runtime") if "cli" not in p.relative_to(ROOT / "runtime").parts]
    bad = forbidden_imports(paths, ("kinebridge.bench",))
    assert not bad, "runtime must not import bench (only runtime/cli may): " + ", ".join(bad)


def test_no_topic_name_literal_outside_the_message_registry():
    from kinebridge.runtime.bus.messages import TOPICS
    registry = ROOT / "runtime" / "bus" / "messages.py"
    paths = [p for folder in ("runtime", "drivers", "bench", "export", "kernels") for p in _py(folder)
             if p != registry]
    bad = topic_literals(paths, set(TOPICS) - {n for n in TOPICS if n.startswith("test/")})
    assert not bad, "use the registry's names (messages.Chunk.TOPIC, ...): " + ", ".join(bad)


@pytest.mark.parametrize("rule", ["kernels", "drivers", "runtime", "topics"])
def test_each_rule_fails_on_a_violation(tmp_path, rule):
    f = tmp_path / "violation.py"
    if rule == "kernels":
        f.write_text("import pydantic\nfrom kinebridge.runtime.bus import codec\n")
        assert len(kernel_violations([f])) == 2
    elif rule == "drivers":
        f.write_text("from kinebridge.runtime.config import load_config\nimport kinebridge.bench.golden\n")
        assert len(forbidden_imports([f], ("kinebridge.runtime", "kinebridge.bench"))) == 2
    elif rule == "runtime":
        f.write_text("from kinebridge.bench import synthetic_skills\n")
        assert len(forbidden_imports([f], ("kinebridge.bench",))) == 1
    else:
        f.write_text('def f(pub, m):\n    pub.publish("chunk", {})\n    if m.topic == "task":\n        pass\n'
                     'def g(S):\n    return S(listen=("heartbeat", "x")), {"task": 1}\n')
        assert topic_literals([f], {"chunk", "task", "heartbeat"}) == [
            "violation.py:2: 'chunk'", "violation.py:3: 'task'", "violation.py:6: 'heartbeat'"]


# --------------------------------------------------------------------------- the control path without torch
def blocked_training_env(tmp_path: Path) -> dict:
    """An environment whose Python cannot import torch, transformers or peft (a package of that name
    that raises ImportError, first on PYTHONPATH — child processes inherit it)."""
    d = tmp_path / "no-training"
    for name in TRAINING:
        (d / name).mkdir(parents=True, exist_ok=True)
        (d / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked: the control path must not "
                                              f"need it')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(d) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


CONTROL_PATH = ["kinebridge.runtime.control.node", "kinebridge.runtime.control.loop", "kinebridge.runtime.bus.codec",
                "kinebridge.runtime.bus.sockets", "kinebridge.runtime.bus.messages", "kinebridge.runtime.node",
                "kinebridge.runtime.supervisor.supervisor", "kinebridge.runtime.supervisor.launch",
                "kinebridge.runtime.trajectory.node", "kinebridge.runtime.recording.node",
                "kinebridge.runtime.policy.decoder", "kinebridge.runtime.policy.node", "kinebridge.runtime.policy.replay"]


def test_the_control_path_imports_with_torch_transformers_and_peft_impossible(tmp_path):
    env = blocked_training_env(tmp_path)
    for name in TRAINING:                                  # the block works
        r = subprocess.run([sys.executable, "-c", f"import {name}"], env=env, capture_output=True, text=True)
        assert r.returncode != 0 and "blocked" in r.stderr
    mods = list(CONTROL_PATH)
    for folder, pkg in (("drivers", "kinebridge.drivers"), ("kernels", "kinebridge.kernels")):
        for p in _py(folder):
            rel = p.relative_to(ROOT / folder).with_suffix("")
            parts = [x for x in rel.parts if x != "__init__"]
            if parts and parts[0] in ("camera", "world"):
                continue      # the simulated world and cameras import mujoco/pyrealsense2 lazily, not torch
            mods.append(".".join([pkg, *parts]))
    code = ("import importlib, sys\n"
            f"for m in {mods!r}:\n    importlib.import_module(m)\n"
            f"print(sorted(m for m in {TRAINING!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "[]"
