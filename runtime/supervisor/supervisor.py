"""The supervisor: starts the runtime's nodes, watches them, restarts or escalates.

* Each enabled ``[nodes.NAME]`` becomes a process ``python -m kinebridge.runtime.node`` with the
  validated config (written once as JSON into the run directory) and its own log file.
* Liveness is two signals: the process exit status and the node's heartbeat on the bus. A node that
  exits, or stays silent for ``supervisor.heartbeat_timeout_s`` (a hung node is killed), is dead.
* A dead **non-critical** node is restarted at once (at most ``restart_limit`` times); the arm keeps
  streaming meanwhile because the control node does not depend on it.
* A dead **critical** node (the control node) escalates to a safe stop: every node is stopped and
  the supervisor itself connects to the arm and commands the controller's stop, so the arm holds
  still even if the control process died between setpoints.
* :meth:`shutdown` (SIGTERM/SIGINT in ``kinebridge run``) stops the nodes with SIGTERM phase by
  phase of their kind (:mod:`~kinebridge.runtime.supervisor.kinds`) — the control node decelerates
  to rest first, the recorder goes last — and SIGKILLs what is left of a phase after a grace period.

The supervisor publishes on its own endpoint (``estop``, ``task``) and listens to every node's
``heartbeat``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.sockets import PRODUCER_IO_PRIORITY, CurveKeys, Publisher, Subscriber, io_thread_fifo
from kinebridge.runtime.config import RuntimeConfig
from kinebridge.runtime.supervisor.kinds import NODE_KINDS

__all__ = ["Supervisor", "NodeProcess", "safe_stop_arm"]


@dataclass
class NodeProcess:
    name: str
    critical: bool
    kind: str = ""
    proc: subprocess.Popen | None = None
    started_s: float = 0.0
    last_heartbeat_s: float | None = None
    status: str = "not started"
    detail: dict = field(default_factory=dict)
    restarts: int = 0
    died_s: float | None = None
    restart_latency_s: list = field(default_factory=list)   # death noticed → first heartbeat of the new process
    gave_up: bool = False
    stopped_s: float | None = None       # when shutdown saw it exit

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def safe_stop_arm(arm_cfg, timeout_s: float = 3.0) -> str:
    """Connect to the arm on its own (the driver ``[arm]`` names) and command the controller's stop;
    returns what happened.

    Used when the control process is gone: whatever it was doing, the controller is told to stop
    (``rm_set_arm_stop``), which holds the arm at its current position."""
    from kinebridge.drivers.arm.factory import make_arm

    realman = arm_cfg.realman.model_copy(update={"connect_timeout_s": min(arm_cfg.realman.connect_timeout_s,
                                                                           timeout_s)})
    arm = make_arm(arm_cfg.model_copy(update={"realman": realman}))
    try:
        arm.connect()
        arm.stop()
        return "arm stopped by the supervisor"
    except Exception as exc:  # the arm may be unreachable: say so, never raise from the escalation path
        return f"could not reach the arm to stop it ({exc}); use the teach pendant's stop"
    finally:
        try:
            arm.close()
        except Exception:
            pass


class Supervisor:
    """Runs the nodes of ``cfg`` with logs and the config snapshot under ``run_dir``."""

    def __init__(self, cfg: RuntimeConfig, run_dir: str | Path, *, listen=(M.Heartbeat.TOPIC,), env: dict | None = None,
                 log=print):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        self.config_path = self.run_dir / "config.json"
        self.config_path.write_text(cfg.model_dump_json(indent=2))
        self.env = env
        self.log = log
        self.nodes = {n: NodeProcess(n, bool(cfg.nodes[n].critical), cfg.nodes[n].kind) for n in cfg.enabled_nodes()}
        self.ctx = zmq.Context()
        if cfg.control.realtime.priority > 0:     # an e-stop leaves at once, however busy the box is
            self.io_thread = io_thread_fifo(self.ctx, PRODUCER_IO_PRIORITY)
        curve = CurveKeys(cfg.bus.curve_keys, "supervisor") if cfg.bus.curve_keys else None
        names = cfg.bus.names()
        self.pub = Publisher(cfg.endpoint("supervisor"), "supervisor", ctx=self.ctx, curve=curve, kind="supervisor",
                             names=names)
        servers = cfg.endpoints(exclude="supervisor")
        self.sub = Subscriber(list(servers), tuple(listen), ctx=self.ctx, curve=curve, servers=servers,
                              name="supervisor", names=names)
        self.failed: str | None = None
        self.events: list[tuple[float, str]] = []
        self.messages: list = []           # non-heartbeat messages received (for `kinebridge run`)
        self._closed = False

    # ---------------------------------------------------------------------------- processes
    def _event(self, text: str) -> None:
        self.events.append((time.monotonic(), text))
        self.log(text)

    def _spawn(self, name: str) -> None:
        np_ = self.nodes[name]
        logf = open(self.run_dir / "logs" / f"{name}.log", "ab")
        args = [sys.executable, "-m", "kinebridge.runtime.node", "--config-json", str(self.config_path), "--name", name]
        np_.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env, start_new_session=True)
        logf.close()
        np_.started_s = time.monotonic()
        np_.last_heartbeat_s = None
        np_.status = "starting"

    def start(self, names=None) -> None:
        """Start the nodes in ``names`` (None: every enabled node)."""
        for name in list(self.nodes) if names is None else names:
            self._spawn(name)

    def wait_ready(self, names=None, timeout_s: float | None = None, statuses=("ready", "streaming")) -> float:
        """Poll until every node in ``names`` reports one of ``statuses``; returns the time it took."""
        names = list(names or self.nodes)
        t0 = time.monotonic()
        deadline = t0 + (timeout_s if timeout_s is not None else self.cfg.supervisor.start_timeout_s)
        while time.monotonic() < deadline:
            self.poll()
            if self.failed:
                raise RuntimeError(self.failed)
            if all(self.nodes[n].status in statuses for n in names):
                return time.monotonic() - t0
            time.sleep(0.005)
        late = [f"{n} ({self.nodes[n].status})" for n in names if self.nodes[n].status not in statuses]
        raise TimeoutError(f"nodes not ready after {deadline - t0:.1f} s: {', '.join(late)}; see {self.run_dir}/logs")

    # -------------------------------------------------------------------------------- watch
    def poll(self, timeout_ms: int = 0) -> None:
        """Take in heartbeats and check every node once; restart or escalate as needed."""
        msg = self.sub.recv(timeout_ms=timeout_ms) if timeout_ms else None
        batch = ([msg] if msg is not None else []) + self.sub.drain()
        now = time.monotonic()
        for m in batch:
            if m.topic != M.Heartbeat.TOPIC:
                self.messages.append(m)
                continue
            hb: M.Heartbeat = m.body
            node = self.nodes.get(hb.node)
            if node is None or node.proc is None or hb.pid != node.proc.pid:
                continue                     # a heartbeat from a previous incarnation (or from nobody we run)
            if node.last_heartbeat_s is None and node.died_s is not None:
                node.restart_latency_s.append(now - node.died_s)
                self._event(f"node {node.name} back after {now - node.died_s:.2f} s (restart {node.restarts})")
                node.died_s = None
            node.last_heartbeat_s = now
            node.status = hb.status
            node.detail = {"kind": hb.kind, "status": hb.status, "received": hb.received, "malformed": hb.malformed,
                           "gaps": hb.gaps, "last_error": hb.last_error, **hb.detail}
        if self.failed:
            return
        timeout = self.cfg.supervisor.heartbeat_timeout_s
        for node in self.nodes.values():
            if node.proc is None or node.gave_up:
                continue
            code = node.proc.poll()
            if code is None:
                last = node.last_heartbeat_s
                silent = now - (last if last is not None else node.started_s)
                limit = timeout if last is not None else self.cfg.supervisor.start_timeout_s
                if silent <= limit:
                    continue
                reason = f"silent for {silent:.2f} s"
                node.proc.kill()
                node.proc.wait()
            else:
                reason = f"exited with code {code}" if code >= 0 else f"killed by signal {-code}"
            self._died(node, reason, now)
            if self.failed:
                return                       # the runtime is stopping: restart nothing

    def _died(self, node: NodeProcess, reason: str, now: float) -> None:
        node.status = "dead"
        if node.critical:
            self._event(f"critical node {node.name} died ({reason}); stopping the arm and the runtime")
            self.failed = f"critical node {node.name} died ({reason})"
            self.pub.send(M.EStop(reason=self.failed[:2000]))
            self._stop_nodes(grace_s=1.0)
            self._event(safe_stop_arm(self.cfg.arm))
            return
        if node.restarts >= self.cfg.supervisor.restart_limit:
            node.gave_up = True
            node.proc = None
            self._event(f"node {node.name} died ({reason}); restart limit {node.restarts} reached, left stopped")
            return
        node.restarts += 1
        node.died_s = now
        self._event(f"node {node.name} died ({reason}); restarting")
        self._spawn(node.name)

    def status(self) -> dict:
        now = time.monotonic()
        return {n: {"pid": p.pid, "status": p.status, "critical": p.critical, "restarts": p.restarts,
                    "heartbeat_age_s": None if p.last_heartbeat_s is None else round(now - p.last_heartbeat_s, 3),
                    **{k: v for k, v in p.detail.items() if k in ("realtime", "error", "ticks", "starved", "arm", "limits")}}
                for n, p in self.nodes.items()}

    # ------------------------------------------------------------------------------ commands
    def send(self, body: M.Body, arrays=None, derived=()) -> M.Stamp:
        """Publish a typed message from the supervisor (a task, an e-stop)."""
        return self.pub.send(body, arrays, derived)

    def publish(self, topic: str, header=None, arrays=None, derived=()) -> M.Stamp:
        """Publish a raw header on ``topic`` as it is (unchecked: for fault tests and benchmarks)."""
        return self.pub.publish(topic, header, arrays, derived)

    def estop(self, reason: str = "operator") -> None:
        self.pub.send(M.EStop(reason=reason))

    # ------------------------------------------------------------------------------ shutdown
    def _stop_nodes(self, grace_s: float = 3.0) -> None:
        """SIGTERM the nodes phase by phase of their kind (kinds.py): the control node first (it
        decelerates to rest), then the producers, the recorder last (it records everyone's final
        messages); each phase gets ``grace_s`` before what is left is killed."""
        alive = [p for p in self.nodes.values() if p.alive()]
        for phase in sorted({NODE_KINDS[p.kind].stop_phase for p in alive}):
            procs = [p for p in alive if NODE_KINDS[p.kind].stop_phase == phase]
            for p in procs:
                p.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for p in procs:
                self._reap(p, deadline)

    @staticmethod
    def _reap(p: NodeProcess, deadline: float) -> None:
        try:
            p.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()
        p.status = "stopped"
        p.stopped_s = time.monotonic()

    def shutdown(self, grace_s: float = 3.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_nodes(grace_s)
        self.pub.close()
        self.sub.close()
        self.ctx.term()
        try:
            os.unlink(self.cfg.endpoint("supervisor")[len("ipc://"):])
        except (FileNotFoundError, ValueError):
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
