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

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import ormsgpack
import zmq

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.sockets import (PRODUCER_IO_PRIORITY, BusError, CurveKeys, Publisher, Subscriber,
                                            io_thread_fifo, ipc_in_use)
from kinebridge.runtime.config import RuntimeConfig
from kinebridge.runtime.supervisor.kinds import NODE_KINDS

__all__ = ["Supervisor", "NodeProcess", "safe_stop_arm", "Interrupted"]


class Interrupted(RuntimeError):
    """SIGTERM/SIGINT arrived while the runtime was starting."""


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
                 log=print, rpc: bool = True):
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
                              name="supervisor", names=names, max_message_bytes=int(cfg.bus.max_message_mb * (1 << 20)))
        self.failed: str | None = None
        self.events: list[tuple[float, str]] = []
        self.messages: list = []           # non-heartbeat messages received (for `kinebridge run`)
        self.keep_messages = True          # a daemon serving for days clears them (see kinebridge run --serve)
        self._closed = False
        self._waiting_phase: list[str] = []   # producers to start once the control node streams (after clear)
        self.rpc = None
        self._poller = zmq.Poller()
        self._poller.register(self.sub.sock, zmq.POLLIN)
        if rpc:
            self.rpc = self.ctx.socket(zmq.REP)
            self.rpc.setsockopt(zmq.LINGER, 0)
            self.rpc.setsockopt(zmq.MAXMSGSIZE, 1 << 16)
            ep = cfg.rpc_endpoint()
            path = ep[len("ipc://"):]
            if ipc_in_use(path):
                self.close_sockets()
                raise BusError(f"another kinebridge runtime answers on {ep} (bus directory {cfg.bus.ipc_dir}); "
                               f"`kinebridge status --ipc-dir {cfg.bus.ipc_dir}` shows it — stop it first")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self.rpc.bind(ep)
            self._poller.register(self.rpc, zmq.POLLIN)

    # ---------------------------------------------------------------------------- processes
    def _event(self, text: str) -> None:
        self.events.append((time.monotonic(), text))
        self.log(text)

    def _spawn(self, name: str) -> None:
        np_ = self.nodes[name]
        logf = open(self.run_dir / "logs" / f"{name}.log", "ab")
        args = [sys.executable, "-m", "kinebridge.runtime.node", "--config-json", str(self.config_path), "--name", name,
                "--parent-pid", str(os.getpid())]
        env = dict(os.environ if self.env is None else self.env)
        env["KINEBRIDGE_RUN_DIR"] = str(self.run_dir)
        np_.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True, preexec_fn=self._affinity(np_.kind))
        logf.close()
        np_.started_s = time.monotonic()
        np_.last_heartbeat_s = None
        np_.status = "starting"

    def _affinity(self, kind: str):
        """With [control.realtime] cpus set, the control node runs on those CPUs (it pins itself) and every
        other node on the rest, so planning and recording never share a core with the control loop."""
        rt_cpus = set(self.cfg.control.realtime.cpus)
        if not rt_cpus or kind == "control":
            return None
        rest = set(range(os.cpu_count() or 1)) - rt_cpus
        if not rest:
            return None

        def pin():
            try:
                os.sched_setaffinity(0, rest)
            except OSError:
                pass
        return pin

    def start(self, names=None) -> None:
        """Start the nodes in ``names`` (None: every enabled node)."""
        for name in list(self.nodes) if names is None else names:
            self._spawn(name)

    def wait_ready(self, names=None, timeout_s: float | None = None, statuses=("ready", "streaming"),
                   should_stop=None, progress=None) -> float:
        """Poll until every node in ``names`` reports one of ``statuses``; returns the time it took.

        ``should_stop()`` (e.g. a SIGTERM flag) ends the wait at once with :class:`Interrupted`;
        ``progress(text)`` is told every few seconds which nodes are still setting up and what they do."""
        names = list(names or self.nodes)
        t0 = time.monotonic()
        deadline = t0 + (timeout_s if timeout_s is not None else self.cfg.supervisor.start_timeout_s)
        next_note = t0 + 5.0
        while time.monotonic() < deadline:
            self.poll(5)
            if self.failed:
                raise RuntimeError(self.failed)
            if should_stop is not None and should_stop():
                raise Interrupted("stopped while the runtime was starting")
            if all(self.nodes[n].status in statuses for n in names):
                return time.monotonic() - t0
            if progress is not None and time.monotonic() >= next_note:
                next_note += 5.0
                busy = [f"{n} ({self.nodes[n].detail.get('setup', self.nodes[n].status)})" for n in names
                        if self.nodes[n].status not in statuses]
                progress(f"waiting {time.monotonic() - t0:.0f} s for {', '.join(busy)}")
        late = [f"{n} ({self.nodes[n].status})" for n in names if self.nodes[n].status not in statuses]
        raise TimeoutError(f"nodes not ready after {deadline - t0:.1f} s: {', '.join(late)}; see {self.run_dir}/logs")

    # -------------------------------------------------------------------------------- watch
    def poll(self, timeout_ms: int = 0) -> None:
        """Take in heartbeats and operator commands, check every node once; restart or escalate as needed."""
        ready = dict(self._poller.poll(timeout_ms)) if timeout_ms else {}
        if self.rpc is not None and (self.rpc in ready or not timeout_ms):
            self._serve_rpc()
        batch = self.sub.drain()
        now = time.monotonic()
        for m in batch:
            if m.topic != M.Heartbeat.TOPIC:
                if self.keep_messages:
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
            before = node.detail.get("latched")
            node.detail = {"kind": hb.kind, "status": hb.status, "received": hb.received, "malformed": hb.malformed,
                           "gaps": hb.gaps, "last_error": hb.last_error, **hb.detail}
            after = node.detail.get("latched")
            if after != before:             # where the user looks: the terminal, the journal
                self._event(f"node {node.name}: holding the arm — {after}" if after else
                            f"node {node.name}: streaming again ({before} cleared)")
        if self._waiting_phase and self._streaming():
            names, self._waiting_phase = self._waiting_phase, []
            self.start(names)
        if self.failed:
            return
        timeout = self.cfg.supervisor.heartbeat_timeout_s
        for node in self.nodes.values():
            if node.proc is None or node.gave_up or node.status == "stopped":
                continue
            code = node.proc.poll()
            if code is None:
                last = node.last_heartbeat_s
                silent = now - (last if last is not None else node.started_s)
                # a node setting up (fitting a skill, compiling kernels, connecting) has the start timeout
                limit = timeout if last is not None and node.status != "starting" else self.cfg.supervisor.start_timeout_s
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
            self._latch(self.failed)
            self.pub.send(M.EStop(reason=self.failed[:2000]))
            self._stop_nodes(grace_s=1.0)
            self._event(safe_stop_arm(self.cfg.arm))
            self._event("the arm stays stopped until `kinebridge clear` (the runtime does not move it again by itself)")
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

    # ---------------------------------------------------------------------------- operator commands
    def _latch(self, reason: str) -> None:
        try:
            path = self.cfg.latch_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(reason[:2000] + "\n")
        except OSError as exc:
            self._event(f"could not write the latch file ({exc}); the e-stop is not remembered across restarts")

    def latched(self) -> str | None:
        """Why the arm must not move again before `kinebridge clear`, or None."""
        control = [p for p in self.nodes.values() if p.kind == "control"]
        for p in control:
            if p.detail.get("latched"):
                return p.detail["latched"]
        path = self.cfg.latch_path()
        if path.exists():
            try:
                return path.read_text().strip() or "latched"
            except OSError:
                return "latched"
        return None

    def _streaming(self) -> bool:
        return any(p.kind == "control" and p.status == "streaming" for p in self.nodes.values())

    def hold(self, reason: str = "operator") -> None:
        """`kinebridge stop`: the control node decelerates to rest and holds; the producers drop their plans."""
        self._event(f"hold requested ({reason})")
        self.pub.send(M.ControlCommand(action="hold", reason=reason[:500]))

    def clear(self, reason: str = "operator") -> str:
        """`kinebridge clear`: acknowledge an e-stop, a hold or a critical node's death and resume."""
        self.cfg.latch_path().unlink(missing_ok=True)
        if self.failed:
            self._event(f"cleared the failure ({self.failed}) on operator request; restarting the nodes")
            self.failed = None
            for p in self.nodes.values():
                p.gave_up = False
                p.restarts = 0
                p.died_s = None
                p.proc = None              # stopped at the failure; started again below, phase by phase
                p.status = "stopped"
            first = [n for n, p in self.nodes.items() if NODE_KINDS[p.kind].start_phase == 0]
            self.start(first)
            self._waiting_phase = [n for n in self.nodes if n not in first]
            return "restarting the runtime"
        self._event(f"clear requested ({reason})")
        self.pub.send(M.ControlCommand(action="clear", reason=reason[:500]))
        return "resuming"

    def health(self) -> dict:
        """What `kinebridge status` reports: nodes, restarts, real-time grants, link, controller errors,
        the current task, latched and failed states; ``healthy`` is what its exit code says."""
        now = time.monotonic()
        nodes = self.status()
        latched = self.latched()
        hb_limit = self.cfg.supervisor.heartbeat_timeout_s
        sick = [n for n, p in self.nodes.items()
                if not p.alive() or p.status not in ("ready", "streaming")
                or p.last_heartbeat_s is None or now - p.last_heartbeat_s > hb_limit]
        control = next((p.detail for p in self.nodes.values() if p.kind == "control"), {})
        trajectory = next((p.detail for p in self.nodes.values() if p.kind == "trajectory"), {})
        link = control.get("link", "streaming" if self._streaming() else "unknown")
        healthy = not self.failed and not latched and not sick and link == "streaming"
        return {"healthy": healthy, "failed": self.failed, "latched": latched, "not_ready": sick,
                "link": link, "controller_errors": control.get("controller_errors", []),
                "realtime": control.get("realtime"), "arm": control.get("arm"),
                "task": trajectory.get("task"), "nodes": nodes, "pid": os.getpid(),
                "events": [e for _, e in self.events[-20:]]}

    def _serve_rpc(self) -> None:
        """Answer what is queued on the command socket (never blocks; a bad request gets an error reply)."""
        while True:
            try:
                raw = self.rpc.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                req = ormsgpack.unpackb(raw)
                if type(req) is not dict or type(req.get("cmd")) is not str:
                    raise ValueError("a request is a map with 'cmd'")
                reply = self._command(req)
            except Exception as exc:      # an operator's bad request never stops the supervisor
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:1000]}
            try:
                self.rpc.send(ormsgpack.packb(reply, default=str))
            except zmq.ZMQError:
                pass

    def _command(self, req: dict) -> dict:
        cmd, reason = req["cmd"], str(req.get("reason", "operator"))[:500]
        if cmd == "status":
            return {"ok": True, **self.health()}
        if cmd == "stop":
            self.hold(reason)
            return {"ok": True, "done": "holding"}
        if cmd == "estop":
            self._event(f"e-stop requested ({reason})")
            self._latch(f"e-stop: {reason}")
            self.pub.send(M.EStop(reason=f"kinebridge estop: {reason}"[:2000]))
            return {"ok": True, "done": "e-stopped"}
        if cmd == "clear":
            return {"ok": True, "done": self.clear(reason)}
        raise ValueError(f"unknown command {cmd!r}; commands: status, stop, estop, clear")

    def status(self) -> dict:
        now = time.monotonic()
        return {n: {"pid": p.pid, "status": p.status, "critical": p.critical, "restarts": p.restarts,
                    "heartbeat_age_s": None if p.last_heartbeat_s is None else round(now - p.last_heartbeat_s, 3),
                    "kind": p.kind,
                    **{k: v for k, v in p.detail.items() if k in ("realtime", "error", "ticks", "starved", "arm", "limits",
                                                                  "latched", "link", "task", "dropped", "setup")}}
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

    def close_sockets(self) -> None:
        self.pub.close()
        self.sub.close()
        if self.rpc is not None:
            self.rpc.close(linger=0)
            with contextlib.suppress(FileNotFoundError, ValueError):
                os.unlink(self.cfg.rpc_endpoint()[len("ipc://"):])
        self.ctx.term()
        with contextlib.suppress(FileNotFoundError, ValueError):
            os.unlink(self.cfg.endpoint("supervisor")[len("ipc://"):])

    def shutdown(self, grace_s: float = 3.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_nodes(grace_s)
        self.close_sockets()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
