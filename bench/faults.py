"""``kinebridge bench faults``: the controller daemon against bad input and faults, on real processes.

* **fuzz**: ≥ 10⁵ generated messages — random frames, random msgpack structures, plausible-but-wrong
  chunks, tasks, heartbeats, commands — published on a node endpoint the control node and the
  supervisor both listen to, interleaved with valid chunks that move the simulated arm. Reported: node
  crashes (must be 0), setpoints the simulated controller refused or found outside the limits (0),
  every drop counted by reason (the control node's heartbeat), messages per second.
* **kill -9 of the supervisor**: a ``kinebridge run --serve`` daemon driving an external simulated
  controller is SIGKILLed mid-motion: time until the arm is at rest (≤ 1 s) and the node processes left
  after 2 s (0); then a second instance on the same bus directory is refused, naming the running one.
* **instruction latency**: ``kinebridge task --instruction``'s path — an instruction through the ingress →
  LocalPlanner → bridge → trajectory → the first setpoint of its task (:func:`instruction_latency`);
* **task latency**: ``kinebridge task``'s path — a task through the ingress → the first setpoint of its
  plan (p50/p95; target ≤ 50 ms p95).

Writes JSON (``--out``) and prints a table. Each part is a function a test runs on a tiny size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kinebridge.kernels.stats import summary
from kinebridge.runtime.bus import messages as M

__all__ = ["fuzz", "kill_supervisor", "task_latency", "instruction_latency", "run", "print_report"]


# --------------------------------------------------------------------------------------- fuzz
def _config(workdir: Path, sim_port: int, udp: int, nodes: dict, **tables):
    from kinebridge.runtime.config import RuntimeConfig, load_config

    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(workdir / "bus")
    data["arm"]["simulate"] = False
    data["arm"]["realman"].update(ip="127.0.0.1", port=sim_port, udp_port=udp, connect_timeout_s=10.0)
    data["recorder"]["directory"] = str(workdir / "rec")
    data["supervisor"]["latch_file"] = str(workdir / "latched")
    data["nodes"] = nodes
    for k, v in tables.items():
        data[k].update(v)
    return RuntimeConfig.model_validate(data)


class _Generator:
    """Messages a fuzzer sends: ``frames()`` returns the multipart frames of one message."""

    TOPICS = [t for t in M.TOPICS if not t.startswith("test/")]

    def __init__(self, seed: int, q_ref: np.ndarray):
        self.rng = np.random.default_rng(seed)
        self.q_ref = np.asarray(q_ref, float)
        self.seq = 0
        self.kinds = {"random_frames": 0, "random_msgpack": 0, "bad_chunk": 0, "bad_task": 0, "bad_heartbeat": 0,
                      "bad_command": 0, "valid_chunk": 0}

    def _stamp(self) -> dict:
        self.seq += 1
        return {"v": M.SCHEMA_VERSION, "seq": self.seq, "stamp_ns": time.monotonic_ns(), "src": "fuzzer"}

    def _value(self, depth=0):
        rng = self.rng
        makers = [lambda: None, lambda: True, lambda: int(rng.integers(-2**63, 2**63 - 1)),
                  lambda: float(rng.normal() * 10.0 ** int(rng.integers(-5, 300))),
                  lambda: float("nan"), lambda: float("inf"),
                  lambda: "".join(chr(int(c)) for c in rng.integers(32, 0x2FF, rng.integers(0, 40))),
                  lambda: bytes(rng.integers(0, 256, rng.integers(0, 30), dtype=np.uint8)),
                  lambda: {"src": 5, "seq": "x"},
                  lambda: [[1, 2], {"a": []}],
                  lambda: [self._value(depth + 1) for _ in range(rng.integers(0, 4))],
                  lambda: {str(rng.integers(0, 99)): self._value(depth + 1) for _ in range(rng.integers(0, 4))}]
        return makers[int(rng.integers(0, len(makers) if depth < 3 else len(makers) - 2))]()

    def frames(self) -> tuple[str, list]:
        import ormsgpack

        from kinebridge.runtime.bus.codec import encode
        rng = self.rng
        kind = rng.choice(["random_frames", "random_msgpack", "bad_chunk", "bad_task", "bad_heartbeat",
                           "bad_command", "valid_chunk"], p=[0.12, 0.2, 0.3, 0.15, 0.1, 0.08, 0.05])
        self.kinds[kind] += 1
        if kind == "random_frames":
            return kind, [bytes(rng.integers(0, 256, rng.integers(0, 64), dtype=np.uint8))
                          for _ in range(rng.integers(1, 5))]
        if kind == "random_msgpack":
            topic = str(rng.choice(self.TOPICS + ["chunks", "", "x" * 300, "control/stat"]))
            hdr = {str(k): self._value() for k in rng.choice(["v", "seq", "stamp_ns", "src", "derived", "t0", "dt",
                                                              "_arrays", "reason", "node", "pid", "q"],
                                                             rng.integers(0, 8))}
            if rng.random() < 0.5:
                hdr.update(self._stamp())
            if rng.random() < 0.3:
                hdr["_arrays"] = [[self._value(), self._value(), self._value()] for _ in range(rng.integers(1, 3))]
            try:
                head = ormsgpack.packb(hdr)
            except Exception:
                head = b"\x80"
            return kind, [topic.encode("utf-8", "replace"), head,
                          *[bytes(rng.integers(0, 256, rng.integers(0, 100), dtype=np.uint8))
                            for _ in range(rng.integers(0, 3))]]
        if kind == "bad_chunk" or kind == "valid_chunk":
            now = time.monotonic()
            n = int(rng.integers(2, 40))
            q = self.q_ref + np.radians(2.0) * np.sin(np.linspace(0, np.pi, n))[:, None] * rng.normal(size=7)
            body = {"t0": now + 0.01, "dt": 0.02}
            arrays = {"q": q}
            if kind == "bad_chunk":
                how = rng.integers(0, 14)
                if how == 0:
                    arrays = {"q": q.astype(np.int64)}
                elif how == 1:
                    arrays = {"q": q.astype(np.float16)}
                elif how == 2:
                    arrays = {"q": q.astype(np.complex128)}
                elif how == 3:
                    arrays = {"q": q[:, :6]}
                elif how == 4:
                    q2 = q.copy()
                    q2[rng.integers(0, n), rng.integers(0, 7)] = np.nan
                    arrays = {"q": q2}
                elif how == 5:
                    arrays = {"q": q + 10.0}                         # far beyond the joint limits
                elif how == 6:
                    body["dt"] = "0.02"
                elif how == 7:
                    body["t0"] = now - 100.0                        # stale
                elif how == 8:
                    body["t0"] = now + 1e6                          # far in the future
                elif how == 9:
                    body["dt"] = -1.0
                elif how == 10:
                    body["extra"] = 1
                elif how == 11:
                    arrays = {"q": q.astype(bool)}
                elif how == 12:
                    del body["t0"]
                else:
                    arrays = {"q": q, "p": np.zeros(3)}
            return kind, encode(M.Chunk.TOPIC, {**self._stamp(), **body}, arrays)
        if kind == "bad_task":
            body = rng.choice([{"params": {"cup": [float("nan"), 0, 0, 0]}}, {"goal": [1, 2, 3]},
                               {"skill": "x" * 500}, {"params": {"cup": "left"}}, {"goal": [0.4, 0, 0.2, 2, 0, 0, 0]},
                               {"skill": "juggle", "params": {"cup": [0.4, 0.1, 0.1, 0]}}, {"cup": [0.4, 0.1, 0.1, 0]}])
            return kind, encode(M.Task.TOPIC, {**self._stamp(), **body})
        if kind == "bad_heartbeat":
            body = {"node": str(rng.choice(["control", "trajectory", "ghost"])), "kind": "control",
                    "pid": int(rng.integers(1, 1 << 22)), "status": "streaming", "received": 0, "malformed": 0,
                    "gaps": 0}
            if rng.random() < 0.5:
                body["pid"] = "many"
            return kind, encode(M.Heartbeat.TOPIC, {**self._stamp(), **body})
        body = rng.choice([{"action": "explode"}, {"action": 3}, {"reason": "x"}, {"action": "hold", "x": 1}])
        return kind, encode(M.ControlCommand.TOPIC, {**self._stamp(), **body})


def fuzz(n: int = 100_000, seed: int = 0, rate_hz: float = 5000.0, workdir: Path | None = None,
         progress=None) -> dict:
    """Drive ``n`` generated messages into a live control node and supervisor; see the module docstring."""
    import zmq

    from kinebridge.drivers.host.net import free_udp_port
    from kinebridge.drivers.realman.sim.controller import spawn_sim
    from kinebridge.runtime.supervisor.supervisor import Supervisor

    workdir = Path(workdir or tempfile.mkdtemp(prefix="kb-fuzz-"))
    udp = free_udp_port()
    out: dict = {"messages": n, "seed": seed}
    with spawn_sim(host="127.0.0.1", port=0, push_port=udp) as sim:
        # "fuzz" is a configured node that is never started: its endpoint is one every node connects to
        cfg = _config(workdir, sim.port, udp, {"control": {"critical": True}, "fuzz": {"kind": "ingress"}},
                      control={"watchdog_s": 5.0}, supervisor={"heartbeat_timeout_s": 2.0})
        sup = Supervisor(cfg, workdir / "run", listen=(M.Heartbeat.TOPIC, M.ControlState.TOPIC, M.ChunkReject.TOPIC),
                         log=lambda s: None)
        ctx = zmq.Context()
        raw = ctx.socket(zmq.PUB)
        raw.setsockopt(zmq.LINGER, 0)
        raw.setsockopt(zmq.SNDHWM, 100_000)
        try:
            raw.bind(cfg.endpoint("fuzz"))
            sup.start(["control"])
            sup.wait_ready(["control"], statuses=("streaming",))
            for _ in range(30):
                sup.poll(10)
            q_ref = next(m for m in reversed(sup.messages) if m.topic == M.ControlState.TOPIC).arrays["q"].copy()
            sim.reset_stats()
            gen = _Generator(seed, q_ref)
            t0 = time.monotonic()
            period = 1.0 / rate_hz
            rejects = 0
            for i in range(n):
                _, frames = gen.frames()
                raw.send_multipart(frames)
                if i % 64 == 0:
                    lag = t0 + i * period - time.monotonic()
                    if lag > 0:
                        time.sleep(lag)
                    sup.poll(0)
                    rejects += sum(1 for m in sup.messages if m.topic == M.ChunkReject.TOPIC)
                    sup.messages.clear()
                    if sup.failed:
                        break
                    if progress and i % 4096 == 0:
                        progress(i / n)
            elapsed = time.monotonic() - t0
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                sup.poll(20)
            control = sup.nodes["control"]
            stats = sim.stats()
            out.update(
                seconds=round(elapsed, 2), messages_per_s=round(n / elapsed), kinds=gen.kinds,
                control_alive=control.alive() and not sup.failed, control_restarts=control.restarts,
                supervisor_failed=sup.failed, dropped_by_reason=control.detail.get("dropped", {}),
                received_by_control=control.detail.get("received"), rejects_published=rejects,
                simulator={"passthrough_received": stats["passthrough"]["received"],
                           "passthrough_accepted": stats["passthrough"]["accepted"],
                           "refused_by_controller": stats["passthrough"]["rejected"]},
                setpoints_outside_limits=sum(stats["passthrough"]["rejected"].values()))
        finally:
            raw.close()
            sup.shutdown()
            ctx.term()
    return out


# -------------------------------------------------------------------------- kill -9 the supervisor
def _joints(sim) -> np.ndarray:
    from kinebridge.drivers.realman.sim.controller import request
    return np.radians(np.array(request(sim.host, sim.port, {"command": "get_joint_degree"},
                                       want="joint_degree")["joint"], float) / 1000.0)


def _alive(pid) -> bool:
    """Whether ``pid`` still runs: a zombie (exited, waiting for whoever inherited it to reap it) drives nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:][:1] not in ("Z", "X")


def _descendants(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"--parent-pid {pid}" in cmd:
            out.append(int(p.name))
    return out


def kill_supervisor(workdir: Path | None = None) -> dict:
    """SIGKILL a serving daemon mid-motion; then start a second one on the same bus directory."""
    from kinebridge.drivers.host.net import free_udp_port
    from kinebridge.drivers.realman.sim.controller import spawn_sim
    from kinebridge.runtime.config import render_toml
    from kinebridge.runtime.daemon.lock import read_runtime_info
    from kinebridge.runtime.ingress.client import IngressProducer

    workdir = Path(workdir or tempfile.mkdtemp(prefix="kb-kill-"))
    udp = free_udp_port()
    out: dict = {}
    with spawn_sim(host="127.0.0.1", port=0, push_port=udp) as sim:
        cfg = _config(workdir, sim.port, udp, {"control": {"critical": True}, "trajectory": {}, "ingress": {}})
        path = workdir / "runtime.toml"
        path.write_text(render_toml(cfg))
        cmd = [sys.executable, "-m", "kinebridge.runtime.cli.main", "run", "--serve", "--config", str(path),
               "--out", str(workdir / "run")]
        daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            end = time.monotonic() + 120
            info = None
            while time.monotonic() < end and daemon.poll() is None:
                info = read_runtime_info(cfg.bus.ipc_dir)
                if info and (workdir / "run").exists() and _ready(info):
                    break
                time.sleep(0.2)
            if daemon.poll() is not None or not info:
                raise RuntimeError(f"the daemon did not come up: {daemon.stderr.read()[-2000:]}")
            with IngressProducer(info["ingress"], "bench") as prod:
                prod.wait_connected(2.0)
                prod.send(M.Task(skill="pour", params={"cup": [0.45, 0.18, 0.08, 20.0]}, task_id="kill"))
            time.sleep(1.2)                                  # mid-motion
            q0 = _joints(sim)
            time.sleep(0.05)
            moving = float(np.abs(_joints(sim) - q0).max()) / 0.05
            nodes = _descendants(daemon.pid)
            t_kill = time.monotonic()
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(5)
            rest_s = None
            prev = _joints(sim)
            while time.monotonic() - t_kill < 5.0:
                time.sleep(0.02)
                cur = _joints(sim)
                if np.abs(cur - prev).max() < 1e-6 and rest_s is None:
                    rest_s = time.monotonic() - t_kill
                    break
                prev = cur
            while time.monotonic() - t_kill < 2.0:
                time.sleep(0.05)
            left = [p for p in nodes if _alive(p)]
            names = []
            for p in left:
                try:
                    argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
                    names.append(argv[argv.index(b"--name") + 1].decode())
                except (OSError, ValueError, IndexError):
                    names.append(str(p))
            out.update(speed_at_kill_rad_s=round(moving, 3), nodes_before=len(nodes), at_rest_after_s=rest_s,
                       orphans_after_2s=len(left), orphans=names)
            # a second instance while the first is running
            first = _popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            end = time.monotonic() + 120
            while time.monotonic() < end and first.poll() is None and not _ready(read_runtime_info(cfg.bus.ipc_dir)):
                time.sleep(0.2)
            second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            out["second_instance_refused"] = second.returncode != 0 and "another kinebridge runtime" in second.stderr
            out["second_instance_message"] = second.stderr.strip().splitlines()[-1] if second.stderr else ""
            first.send_signal(signal.SIGTERM)
            first.wait(30)
            out["sigterm_exit_code"] = first.returncode
        finally:
            for p in _descendants(daemon.pid):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            if daemon.poll() is None:
                daemon.kill()
    return out


def _popen(cmd, **kw):
    """Popen, retried: right after a SIGKILLed process group goes away the fork of the next one has been
    seen to fail once with EACCES on this VM."""
    for attempt in range(3):
        try:
            return subprocess.Popen(cmd, **kw)
        except PermissionError:
            if attempt == 2:
                raise
            time.sleep(0.5)


def _ready(info) -> bool:
    if not info:
        return False
    try:
        from kinebridge.runtime.cli.operate import request
        r = request(info, "status", 1.0)
        return all(n["status"] in ("ready", "streaming") for n in r["nodes"].values())
    except Exception:
        return False


# ----------------------------------------------------------------------- link faults, at runtime level
def link_faults(reconnects: int = 100, late: int = 50, workdir: Path | None = None, progress=None) -> dict:
    """A control node under its supervisor while the simulated controller (1) delays its state push within
    the late window (20–80 ms, ``late`` times: the runtime must not stop, the arm decelerates and resumes)
    and (2) ends the connection from its side, FIN and RST alternately, ``reconnects`` times: each time the
    control node must notice, hold, reconnect by itself and stream again."""
    from kinebridge.drivers.host.net import free_udp_port
    from kinebridge.drivers.realman.sim.controller import spawn_sim
    from kinebridge.runtime.supervisor.supervisor import Supervisor

    workdir = Path(workdir or tempfile.mkdtemp(prefix="kb-link-"))
    udp = free_udp_port()
    out: dict = {}
    with spawn_sim(host="127.0.0.1", port=0, push_port=udp) as sim:
        cfg = _config(workdir, sim.port, udp, {"control": {"critical": True}})
        sup = Supervisor(cfg, workdir / "run", listen=(M.Heartbeat.TOPIC, M.ControlState.TOPIC), log=lambda s: None)
        try:
            sup.start(["control"])
            sup.wait_ready(["control"], statuses=("streaming",))

            def pump(seconds):
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    sup.poll(10)
                sup.messages.clear()

            def detail():
                return sup.nodes["control"].detail

            pump(0.5)
            rng = np.random.default_rng(0)
            for i in range(late):
                sim.request({"command": "kinebridge_sim_pause_push", "pause_s": float(rng.uniform(0.02, 0.08))})
                pump(0.25)
            d = detail()
            out["late_pushes"] = {"injected": late, "runtime_stopped": bool(sup.failed), "links_lost": d.get("links_lost"),
                                  "late_ticks": d.get("late_ticks"), "control_restarts": sup.nodes["control"].restarts}
            before = d.get("reconnects", 0) or 0
            times, failures = [], 0
            for i in range(reconnects):
                t0 = time.monotonic()
                sim.request({"command": "kinebridge_sim_drop_clients", "how": "fin" if i % 2 == 0 else "rst"})
                end = t0 + 10.0
                resumed = False
                while time.monotonic() < end:
                    sup.poll(10)
                    d = detail()
                    if (d.get("reconnects", 0) or 0) > before + i - failures and d.get("link") == "streaming":
                        resumed = True
                        break
                if resumed:
                    times.append(time.monotonic() - t0)
                else:
                    failures += 1
                sup.messages.clear()
                if progress:
                    progress((i + 1) / reconnects)
            pump(0.3)
            out["reconnects"] = {"cycles": reconnects, "resumed": len(times), "failures": failures,
                                 "runtime_stopped": bool(sup.failed), "detect_and_resume_s": summary(times),
                                 "control_restarts": sup.nodes["control"].restarts}
        finally:
            sup.shutdown()
    return out


# ------------------------------------------------------------------------------ task latency
def task_latency(n: int = 20, workdir: Path | None = None) -> dict:
    """Tasks through the ingress (as ``kinebridge task`` sends them) → the first setpoint of their plan."""
    from kinebridge.runtime.bus.sockets import Subscriber
    from kinebridge.runtime.ingress.client import IngressProducer
    from kinebridge.runtime.supervisor.launch import launch

    from kinebridge.runtime.config import RuntimeConfig, load_config
    workdir = Path(workdir or tempfile.mkdtemp(prefix="kb-task-"))
    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(workdir / "bus")
    data["nodes"] = {k: v for k, v in data["nodes"].items() if k != "recorder"}
    cfg = RuntimeConfig.model_validate(data)
    rt = launch(cfg, workdir / "run", log=lambda s: None)
    lat = []
    try:
        eps = list(rt.cfg.endpoints(exclude="supervisor"))
        sub = Subscriber(eps, (M.Task.TOPIC, M.Chunk.TOPIC, M.ChunkLatency.TOPIC, M.TaskDone.TOPIC, M.TaskError.TOPIC))
        prod = IngressProducer(rt.cfg.ingress_endpoint(), "bench")
        prod.wait_connected(3.0)
        time.sleep(0.3)
        cups = [(0.45, 0.18, 0.08, 20.0), (0.36, 0.08, 0.10, -10.0)]
        for i in range(n):
            sent = prod.send(M.Task(skill="pour", params={"cup": list(cups[i % 2])}, task_id=f"t{i}"))
            relayed = first_chunk = None
            end = time.monotonic() + 20
            done = False
            while time.monotonic() < end and not done:
                m = sub.recv(100)
                if m is None:
                    continue
                if m.topic == M.Task.TOPIC and any(d.src == "bench" and d.seq == sent.seq for d in m.derived):
                    relayed = m.stamp
                elif m.topic == M.Chunk.TOPIC and relayed and first_chunk is None and m.derived \
                        and m.derived[0].stamp_ns == relayed.stamp_ns:
                    first_chunk = m.stamp
                elif m.topic == M.ChunkLatency.TOPIC and first_chunk and m.derived[0].seq == first_chunk.seq \
                        and m.derived[0].src == first_chunk.src and len(lat) < i + 1:
                    lat.append((first_chunk.stamp_ns + m.body.latency_ns - sent.stamp_ns) / 1e6)
                elif m.topic in (M.TaskDone.TOPIC, M.TaskError.TOPIC) and m.body.task_id == f"t{i}":
                    done = True
        prod.close()
        sub.close()
    finally:
        rt.shutdown()
    return {"tasks": n, "measured": len(lat), "task_to_first_setpoint_ms": summary(lat)}


def instruction_latency(n: int = 20, workdir: Path | None = None, seed: int = 21) -> dict:
    """Instructions through the ingress (as ``kinebridge task --instruction`` sends them) → the first setpoint
    of the task the bridge made of the LocalPlanner's decision: world (no cameras) → planner → bridge →
    trajectory → control. Measured from the ingress's re-publication of ``planner/instruction`` (its
    receipt) to the control node sending the first row of the first chunk (chunk stamp + chunk latency),
    every hop traced through the ``derived`` stamps; also per stage (decision, task, first chunk)."""
    from kinebridge.runtime.bus.sockets import Subscriber
    from kinebridge.runtime.config import RuntimeConfig, load_config
    from kinebridge.runtime.daemon.instruction import enable_in_config
    from kinebridge.runtime.ingress.client import IngressProducer
    from kinebridge.runtime.supervisor.launch import launch

    workdir = Path(workdir or tempfile.mkdtemp(prefix="kb-instr-"))
    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(workdir / "bus")
    data["nodes"] = {k: v for k, v in data["nodes"].items() if k != "recorder"}
    enable_in_config(data, "world")
    data["world"].update(seed=seed, mugs=1, distractors=1, particles=0, cameras={}, truth_hz=5.0)
    cfg = RuntimeConfig.model_validate(data)
    rt = launch(cfg, workdir / "run", log=lambda s: None)
    rows = []
    try:
        eps = list(rt.cfg.endpoints(exclude="supervisor"))
        sub = Subscriber(eps, (M.Instruction.TOPIC, M.Decision.TOPIC, M.Task.TOPIC, M.Chunk.TOPIC,
                               M.ChunkLatency.TOPIC))
        prod = IngressProducer(rt.cfg.ingress_endpoint(), "bench")
        prod.wait_connected(3.0)
        time.sleep(1.0)                       # the world's first truth: the planner's candidates
        for i in range(n):
            sent = prod.send(M.Instruction(text="pour water into the mug", dialogue_id=f"bench{i}"))
            st: dict = {}
            end = time.monotonic() + 10
            while time.monotonic() < end and "setpoint" not in st:
                m = sub.recv(100)
                if m is None:
                    continue
                der = {(d.topic, d.stamp_ns) for d in m.derived}
                if m.topic == M.Instruction.TOPIC and any(d.src == "bench" and d.seq == sent.seq for d in m.derived):
                    st["ingress"] = m.stamp.stamp_ns
                elif m.topic == M.Decision.TOPIC and (M.Instruction.TOPIC, st.get("ingress")) in der:
                    st["decision"], st["status"] = m.stamp.stamp_ns, m.body.status
                elif m.topic == M.Task.TOPIC and (M.Decision.TOPIC, st.get("decision")) in der:
                    st["task"] = m.stamp.stamp_ns
                elif m.topic == M.Chunk.TOPIC and "chunk" not in st and (M.Task.TOPIC, st.get("task")) in der:
                    st["chunk"], st["chunk_seq"], st["chunk_src"] = m.stamp.stamp_ns, m.stamp.seq, m.stamp.src
                elif m.topic == M.ChunkLatency.TOPIC and "chunk" in st and m.derived \
                        and m.derived[0].seq == st["chunk_seq"] and m.derived[0].src == st["chunk_src"]:
                    st["setpoint"] = st["chunk"] + m.body.latency_ns
            st["sent"] = sent.stamp_ns
            rows.append(st)
            time.sleep(0.3)                   # the next instruction comes mid-motion: a re-plan
        prod.close()
        sub.close()
    finally:
        rt.shutdown()

    def ms(a, b):
        return [(r[b] - r[a]) / 1e6 for r in rows if a in r and b in r]
    return {"instructions": n, "measured": len(ms("ingress", "setpoint")), "planner": "local",
            "statuses": sorted({r.get("status", "none") for r in rows}),
            "instruction_to_first_setpoint_ms": summary(ms("ingress", "setpoint"), digits=2),
            "sent_to_first_setpoint_ms": summary(ms("sent", "setpoint"), digits=2),
            "stages_ms": {"instruction_to_decision": summary(ms("ingress", "decision"), digits=2),
                          "decision_to_task": summary(ms("decision", "task"), digits=2),
                          "task_to_first_chunk": summary(ms("task", "chunk"), digits=2),
                          "first_chunk_to_setpoint": summary(ms("chunk", "setpoint"), digits=2)}}


# ------------------------------------------------------------------------------------- report
def run(fuzz_n: int = 100_000, tasks: int = 20, out: Path = Path("out/bench/faults.json"), quick: bool = False,
        latency_only: bool = False) -> dict:
    from tqdm import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res: dict = {"machine": {"cpus": os.cpu_count(), "euid": os.geteuid()}}
    if latency_only:          # the task and instruction latencies only (no fuzzing, no faults)
        res["task_latency"] = task_latency(3 if quick else tasks)
        res["instruction_latency"] = instruction_latency(3 if quick else tasks)
        out.write_text(json.dumps(res, indent=2, default=str))
        return res
    with tqdm(total=100, desc="fuzz", unit="%") as bar:
        def prog(f):
            bar.n = int(100 * f)
            bar.refresh()
        res["fuzz"] = fuzz(2000 if quick else fuzz_n, progress=prog)
        bar.n = 100
        bar.refresh()
    res["link"] = link_faults(5 if quick else 100, 5 if quick else 50)
    res["kill_supervisor"] = kill_supervisor()
    res["task_latency"] = task_latency(3 if quick else tasks)
    res["instruction_latency"] = instruction_latency(3 if quick else tasks)
    out.write_text(json.dumps(res, indent=2, default=str))
    return res


def print_report(r: dict) -> None:
    from rich.console import Console
    con = Console()
    f = r.get("fuzz")
    if f is None:
        _print_latency(con, r)
        return
    con.print(f"[bold]fuzz[/bold]: {f['messages']} messages at {f.get('messages_per_s')}/s — control alive "
              f"{f.get('control_alive')} (restarts {f.get('control_restarts')}), supervisor failed {f.get('supervisor_failed')}, "
              f"setpoints outside limits {f.get('setpoints_outside_limits')}; dropped by reason {f.get('dropped_by_reason')}; "
              f"kinds {f.get('kinds')}")
    lk = r.get("link", {})
    lp, rc = lk.get("late_pushes", {}), lk.get("reconnects", {})
    con.print(f"[bold]late pushes[/bold] (20–80 ms, within the window): {lp.get('injected')} injected — runtime stopped "
              f"{lp.get('runtime_stopped')}, links lost {lp.get('links_lost')}, late ticks {lp.get('late_ticks')}")
    dr = rc.get("detect_and_resume_s", {})
    con.print(f"[bold]controller-side close/reset[/bold]: {rc.get('resumed')}/{rc.get('cycles')} reconnected and "
              f"streaming again (failures {rc.get('failures')}), close → streaming p50 {dr.get('p50')} s, max "
              f"{dr.get('max')} s; runtime stopped {rc.get('runtime_stopped')}")
    k = r["kill_supervisor"]
    con.print(f"[bold]kill -9 supervisor[/bold]: moving {k.get('speed_at_kill_rad_s')} rad/s, at rest after "
              f"{k.get('at_rest_after_s')} s, orphans after 2 s {k.get('orphans_after_2s')} (of {k.get('nodes_before')}); "
              f"second instance refused {k.get('second_instance_refused')} ({k.get('second_instance_message')}); "
              f"SIGTERM exit {k.get('sigterm_exit_code')}")
    _print_latency(con, r)


def _print_latency(con, r: dict) -> None:
    t = r["task_latency"]["task_to_first_setpoint_ms"]
    con.print(f"[bold]task → first setpoint[/bold] (ingress): p50 {t['p50']} ms, p95 {t['p95']} ms, max {t['max']} ms "
              f"over {t['n']}")
    if "instruction_latency" in r:
        il = r["instruction_latency"]
        t = il["instruction_to_first_setpoint_ms"]
        con.print(f"[bold]instruction → first setpoint[/bold] (ingress, LocalPlanner → bridge → trajectory → control): "
                  f"p50 {t['p50']} ms, p95 {t['p95']} ms, max {t['max']} ms over {t['n']} (target ≤ 150 ms p95); "
                  + ", ".join(f"{k} p95 {v['p95']} ms" for k, v in il["stages_ms"].items()))


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="kinebridge bench faults")
    ap.add_argument("--fuzz", type=int, default=100_000)
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("out/bench/faults.json"))
    a = ap.parse_args(argv)
    r = run(a.fuzz, a.tasks, a.out, a.quick, a.latency_only)
    print_report(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
