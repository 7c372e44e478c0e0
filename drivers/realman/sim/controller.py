"""Simulated RealMan RM75 controller: the JSON/TCP protocol and UDP state push of a real one.

RealMan's official SDK (robotic-arm 1.1.6, ``Robotic_Arm.rm_robot_interface.RoboticArm``) connects to
it unmodified. It is kinebridge's default arm without hardware, the CI target and the target of the
hardware-in-the-loop suite. Protocol facts: ``shared/reference/realman-protocol.md``; the joint model:
:mod:`kinebridge.drivers.realman.sim.dynamics`; framing, units and reply shapes:
:mod:`kinebridge.drivers.realman.protocol`.

Run it::

    kinebridge sim --port 8080 --push-port 8089            # or: python -m kinebridge.drivers.realman.sim.controller
    sim = SimController(port=0, push_port=0).start()        # in-process (tests); sim.port, sim.push_port
    with spawn_sim() as p: ...                              # subprocess; p.port, p.push_port, p.kill()

With ``port=0`` (or ``push_port=0``) free ports are picked; the process prints one JSON line on
stdout when it accepts TCP: ``{"event": "ready", "host": …, "port": …, "push_port": …, "pid": …}``.

TCP server
----------
* Any number of clients, each with a reader thread and a writer thread (replies and the unsolicited
  completion messages go through one queue per client, so they never interleave and a client that
  stops reading blocks nobody else).
* Every request the SDK's 11-step connect handshake and a typical script send is answered with the
  exact keys and JSON types SDK 1.1.6 accepts (see ``HANDLERS`` below for the list). Planned moves
  get ``receive_state`` at once and the ``current_trajectory_state`` completion (``device`` 0,
  ``trajectory_connect``) later, on the issuing client only. ``movej_canfd``/``movep_canfd`` are
  never answered (Gen-3/4 behaviour).
* **Bad input** (RealMan documents no reply for malformed JSON or unknown commands; the answers
  below are this simulator's choice, see :func:`realman_protocol.error_reply`): malformed JSON,
  non-object JSON, a line over 64 KiB, or an object without a string ``"command"`` →
  ``{"state":"json_error","error":…}``; an unknown command → ``{"command":<name>,"error":"unknown
  command"}``; a known command with missing / mistyped / out-of-range fields → its normal reply with
  the success flag ``false`` (RealMan's API docs: "控制器返回false，传递参数错误", SDK code 1). A
  malformed pass-through point gets no reply (like every pass-through point) and is counted as
  rejected (``bad_value``). Boolean fields also accept 0/1. Nothing a client sends can raise out of
  a thread.
* One lock guards the arm. The IK of ``movel``/``movej_p`` (up to ~15 ms) runs outside it, so
  planning never delays the push; the warm-started IK of a ``movep_canfd`` point (~0.1 ms) runs
  inside.
* **A client disconnecting** (even mid-stream) only ends its threads. The arm behaves as a real
  controller does when the stream stops: in high follow it holds the last accepted point, in low
  follow it finishes the way to the newest point and stops; a planned move runs to its end (its
  completion message is dropped). The push to that client's host stops unless a push target was
  configured with ``set_realtime_push``.

UDP push
--------
One thread with absolute deadlines on ``time.monotonic_ns()`` (no drift): it sleeps until 0.4 ms
before the deadline, then yields in a short spin. Each cycle it integrates the arm up to now (1 ms
substeps), sends one datagram in the §1.7 format (``err``, ``joint_status``, ``waypoint`` with
``position``/``euler``/``quat``, ``arm_current_status``, ``state``) to the configured ``ip:port``,
or — when none is configured — to every connected client's host at the push port (deduplicated),
from the address the simulator listens on (so the SDK's ``arm_ip`` tells simulators on different
loopback addresses apart), and delivers completion messages. Its period is ``cycle`` × 5 ms. Late
cycles are skipped, never sent in a burst. Period errors are recorded for ``kinebridge_sim_stats``.
With ``realtime`` > 0 (``--rt-priority``, default 10 for ``kinebridge sim`` and :func:`spawn_sim`, 0 in-process) the push
thread asks for SCHED_FIFO and silently keeps normal scheduling where that is not permitted
(``push.sched_fifo`` in the stats tells which). Measured on the 2-core CI VM with the SDK streaming
``movej_canfd`` at 500 Hz from another process: period error p99 0.005–0.3 ms with SCHED_FIFO even
with two CPU hogs running; without it p99 0.01–0.7 ms on a quiet box and 2.7–6 ms under the hogs.
Integrating the arm in this thread costs ~30 µs per cycle (median; five 1 ms substeps plus the
datagram), so this design already meets p99 ≤ 1 ms and no separate servo thread is used (that
alternative was not built or measured).

The push thread shares the GIL with the TCP threads. At normal priority a reader holding the GIL could
be preempted by normal work mid-request, and the FIFO push thread then waited for the GIL behind it (a
priority inversion): under ``shared/tools/load.sh`` (two 600×600 matmul loops and an fsync writer on the
2 cores) with the SDK streaming at 200 Hz, period error p99 3.1–5.9 ms, p99.9 5.7–21 ms, max 25–93 ms.
So the accept, reader and writer threads (and the main thread of ``kinebridge sim``) run under SCHED_FIFO
one step below the push where permitted (``push.tcp_threads_sched_fifo``); they block on their sockets
between requests and are never preempted by normal work while holding the GIL. Same load: p99 2.4–3.0 ms,
p99.9 4.6–5.5 ms, max 6.6–19 ms — the floor of a lone FIFO Python thread sleeping to 5 ms deadlines on
this VM under that load (p99 2.1 ms, p99.9 3.8 ms, max 5.8 ms: the kernel is not preemptible and the
fsync writer holds it). Moving the push to a process of its own was not needed for that.

Extension commands (prefix ``kinebridge_``; the SDK never sends them)
-------------------------------------------------------------------
``{"command":"kinebridge_sim_stats"}`` (Python: :meth:`SimController.stats`, :meth:`SimProcess.stats`) →
``{"command": "kinebridge_sim_stats",
"passthrough": {"received", "accepted", "rejected": {reason: n}, "checksum"},
"planned_moves": {"accepted", "refused": {reason: n}},
"push": {"sent", "cycle_ms", "sched_fifo", "tcp_threads_sched_fifo", "period_error_us": {"n", "p50", "p99",
"max"}},
"clients", "dropped_clients", "uptime_s"}``. Add ``"arrivals": true`` to get ``"arrival_ns"``: the CLOCK_MONOTONIC
(``time.monotonic_ns()``, comparable across processes) receive stamps of the last ≤ 20000
pass-through points (``movej_canfd`` and ``movep_canfd``). Rejection reasons: ``bad_value``
(malformed point), ``overspeed`` (0x1007), ``overspeed_latched`` (ignored until clear_system_err),
``joint_limit`` (0x1002), ``unreachable`` (0x1003), ``busy`` (a planned move or a stop is running),
``power_off``. ``period_error_us`` is |interval between consecutive datagrams − cycle × 5 ms|.
``checksum`` is ``Σ_i (i+1)·Σ_j joint_ij mod 2**61`` over every well-formed ``movej_canfd``
received since the last reset, in arrival order (i from 0), on the integer wire values (Python
``%``, never negative); :func:`passthrough_checksum` computes the same on the sender's side.
``{"command":"kinebridge_sim_reset_stats"}`` → ``{"command":"kinebridge_sim_reset_stats","state":true}``
zeroes all of it.

Faults for the driver's tests (:mod:`kinebridge.drivers.realman.faults`):
``{"command":"kinebridge_sim_drop_clients","how":"fin"|"rst","pause_push_s":0}`` ends every other client's
connection from the controller's side — ``fin`` an orderly close, ``rst`` a reset (SO_LINGER 0: the peer
sees ECONNRESET, no FIN) — and with ``pause_push_s`` > 0 also stops the push that long (a rebooting
controller). Otherwise the push goes on to a target set with ``set_realtime_push`` (RealMan documents
nothing about the push after a client leaves; this is the simulator's choice). Reply
``{"command":"kinebridge_sim_drop_clients","state":true,"dropped":n}``; ``dropped_clients`` in the stats
counts them. ``{"command":"kinebridge_sim_pause_push","pause_s":x}`` stops the push for x s and leaves
TCP alone (a pulled push path). Bad values: ``"state": false``.

``--log`` prints a wire transcript (``<seconds> RX|TX <peer> <json>``, plus CONN/EOF) to stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from typing import Any, Callable

import numpy as np

from kinebridge.drivers.arm.driver import JointLimits
from kinebridge.drivers.arm.model import ARM_MODELS, arm_model
from kinebridge.drivers.host.net import free_udp_port
from kinebridge.drivers.host.realtime import set_timer_slack_ns, try_sched_fifo
from kinebridge.drivers.realman import protocol as proto
from kinebridge.drivers.realman.sim.dynamics import ArmSim, Completion, GripperSim
from kinebridge.drivers.realman.sim.options import READY_DEG, add_arguments  # noqa: F401 (shared with `kinebridge sim`)
from kinebridge.kernels import rm75 as kin
from kinebridge.kernels.stats import summary

__all__ = ["SimController", "SimProcess", "spawn_sim", "passthrough_checksum", "main", "MODELS"]

#: Product versions the simulator can pretend to be → d7 (m).
MODELS = ARM_MODELS      # the arm models the simulator can be (kinebridge.drivers.arm.model)

_CHECKSUM_MOD = 1 << 61
_ARRIVALS_KEPT = 20000
_PERIOD_SAMPLES_KEPT = 200_000
_SPIN_NS = 400_000          # sleep until this long before a push deadline, then spin
_RECV_BYTES = 65536


def passthrough_checksum(joints, start_index: int = 0, initial: int = 0) -> int:
    """The simulator's order-sensitive checksum of pass-through points.

    ``joints``: the integer wire values (0.001°) of each ``movej_canfd`` point in arrival order,
    shape (N, dof). Returns ``(initial + Σ_i (start_index+i+1)·Σ_j joints[i][j]) mod 2**61``.
    Note that SDK 1.1.6 converts degrees to wire values by truncation toward zero after a float32
    cast (``int(float32(deg) * 1000)``), not by rounding."""
    acc = int(initial)
    for i, row in enumerate(joints):
        acc = (acc + (start_index + i + 1) * sum(int(x) for x in row)) % _CHECKSUM_MOD
    return acc


class _Client:
    """One TCP client: its socket, its outbound queue and writer thread."""

    def __init__(self, cid: int, sock: socket.socket, addr, log: Callable[[str, str], None] | None):
        self.id = cid
        self.sock = sock
        self.addr = addr
        self.host = addr[0]
        self.peer = f"{addr[0]}:{addr[1]}"
        self.alive = True
        self.reset = False
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._log = log
        self.writer = threading.Thread(target=self._write_loop, name=f"sim-tx-{cid}", daemon=True)
        self.on_start: Callable[[], None] | None = None    # run first on the writer thread (its priority)

    def send(self, obj: dict) -> None:
        if self.alive:
            self._q.put(obj)

    def close(self) -> None:
        self.alive = False
        try:
            # before the writer may close the fd: a close() while the reader blocks in recv() would not
            # release the socket (no FIN, no RST) until something else woke that recv().
            # A reset connection must not say goodbye first: only wake the reader (SHUT_RD sends nothing).
            self.sock.shutdown(socket.SHUT_RD if self.reset else socket.SHUT_RDWR)
        except OSError:
            pass
        self._q.put(None)

    def drop(self, how: str) -> None:
        """End the connection from the controller's side: ``"fin"`` an orderly close (FIN), ``"rst"`` a
        reset (SO_LINGER 0, then close: the peer sees ECONNRESET and no FIN)."""
        if how == "rst":
            self.reset = True
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.close()

    def _write_loop(self) -> None:
        if self.on_start is not None:
            self.on_start()
        while True:
            obj = self._q.get()
            if obj is None:
                break
            try:
                data = proto.encode(obj)
            except (TypeError, ValueError):
                continue
            if self._log:
                self._log("TX " + self.peer, data[:-2].decode("utf-8", "replace"))
            try:
                self.sock.sendall(data)
            except OSError:
                self.alive = False
                break
        try:
            self.sock.close()
        except OSError:
            pass


# ------------------------------------------------------------------------------ field validation
def _int_list(msg: dict, key: str, n: int) -> list[int] | None:
    v = msg.get(key)
    if not isinstance(v, list) or len(v) != n:
        return None
    if not all(isinstance(x, int) and not isinstance(x, bool) and abs(x) < 1 << 53 for x in v):
        return None
    return v


def _int(msg: dict, key: str, lo: int, hi: int, default: int | None = None) -> int | None:
    v = msg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        return None
    return v


def _bool(msg: dict, key: str, default: bool | None = None) -> bool | None:
    v = msg.get(key, default)
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):        # some clients send 0/1
        return bool(v)
    return None


def _percentiles_us(samples_ns) -> dict:
    return summary(np.fromiter(samples_ns, dtype=np.int64, count=len(samples_ns)), 1e-3, digits=1)


# ------------------------------------------------------------------------------------ controller
class SimController:
    """The simulated controller. ``start()`` binds and starts the threads; ``stop()`` ends them.

    ``port``/``push_port`` 0 pick free ports (read them back from :attr:`port`/:attr:`push_port`).
    ``cycle`` is the initial push period in 5 ms units; ``gen`` 3 or 4 selects the software-info
    reply form; ``q0`` the initial joints (rad, default zeros).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, push_port: int = 8089, cycle: int = 1,
                 model: str = "RM75-B", gen: int = 3, *, q0=None, log: bool = False, log_stream=None,
                 gripper_duration: float = 1.0, realtime: int = 0, joint_speed_scale: float = 1.0):
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        if gen not in (3, 4):
            raise ValueError(f"gen must be 3 or 4, got {gen!r}")
        if not 1 <= int(cycle) <= 100:
            raise ValueError(f"cycle must be 1…100 (× 5 ms), got {cycle!r}")
        if not 0 <= int(realtime) <= 99:
            raise ValueError(f"realtime (SCHED_FIFO priority) must be 0…99, got {realtime!r}")
        if not 0 <= int(port) <= 65535 or not 0 <= int(push_port) <= 65535:
            raise ValueError("port and push_port must be 0…65535 (0 = pick a free one)")
        self.host = host
        self.port = int(port)
        self.push_port = int(push_port) or free_udp_port(host)
        self.model, self.gen = model, int(gen)
        if not 0.0 < float(joint_speed_scale) <= 1.0:
            raise ValueError(f"joint_speed_scale must be in (0, 1], got {joint_speed_scale!r}")
        arm_facts = arm_model(model)
        self.d7 = arm_facts.d7
        lim = arm_facts.limits
        # a controller configured with slower joints reports (and enforces) lower speed limits
        limits = JointLimits(lim.q_min, lim.q_max, lim.qd_max * float(joint_speed_scale), lim.qdd_max)
        self._realtime = int(realtime)      # SCHED_FIFO priority for the push thread (0: normal scheduling)
        self._rt = False
        self._rt_helpers: bool | None = None   # TCP threads under SCHED_FIFO (None: not asked)
        self._log_on = bool(log)
        self._log_stream = log_stream or sys.stderr
        self._log_lock = threading.Lock()
        self._t_start = time.monotonic_ns()

        self._lock = threading.Lock()
        self.arm = ArmSim(d7=self.d7, limits=limits, q0=q0, t0=self._now())
        self.gripper = GripperSim(duration=gripper_duration)
        # push configuration (set_realtime_push)
        self._push_cycle = int(cycle)
        self._push_enable = True
        self._push_ip: str | None = None          # None: push to every client's host
        self._push_cfg_port = self.push_port
        self._push_custom = {"joint_speed": True, "arm_current_status": True}

        self._clients: dict[int, _Client] = {}
        self._next_cid = 1
        self._dropped = 0                         # connections ended by kinebridge_sim_drop_clients
        self._push_paused_until_ns = 0
        self._running = False
        self._threads: list[threading.Thread] = []
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._reset_stats_locked()

    # ---------------------------------------------------------------------------------- lifecycle
    def start(self) -> "SimController":
        """Warm up the kinematics, bind, start the threads; returns self once TCP accepts."""
        _warm_up_kinematics(self.d7)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((self.host, self.port))
        except OSError as exc:
            tcp.close()
            raise OSError(f"simulated controller cannot listen on {self.host}:{self.port}: {exc}") from exc
        tcp.listen(16)
        tcp.settimeout(0.2)
        self._tcp = tcp
        self.port = tcp.getsockname()[1]
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if self.host not in ("", "0.0.0.0"):
            # datagrams come from the controller's own address (the SDK reports it as arm_ip)
            self._udp.bind((self.host, 0))
        self._running = True
        for target, name in ((self._accept_loop, "sim-accept"), (self._push_loop, "sim-push")):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def stop(self) -> None:
        """Close every connection and end every thread (safe to call twice)."""
        self._running = False
        with self._lock:
            clients = list(self._clients.values())
        for c in clients:
            c.close()
        for th in self._threads:
            th.join(timeout=2.0)
        self._threads.clear()
        for s in (self._tcp, self._udp):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._tcp = self._udp = None

    def __enter__(self) -> "SimController":
        return self.start() if not self._running else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self, stop: threading.Event | None = None) -> None:
        """Block until SIGINT/SIGTERM or ``stop`` is set (call from the main thread), then stop."""
        stop = stop or threading.Event()

        def _handler(signum, frame):  # noqa: ARG001
            stop.set()

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)
        try:
            while not stop.wait(0.5) and self._running:
                pass
        finally:
            self.stop()

    # ----------------------------------------------------------------------------------- helpers
    def _helper_thread_priority(self) -> None:
        """Run the calling TCP thread (accept, reader, writer) under SCHED_FIFO one step below the push.

        They hold the GIL while they parse and answer; at normal priority a CPU hog can preempt one
        mid-request, and the FIFO push thread then waits for the GIL behind it (a priority inversion:
        pushes 10–90 ms late under ``load.sh``). At FIFO they are never preempted by normal work, so the
        GIL comes back within the switch interval. They block on their sockets between requests."""
        if self._realtime:
            ok = try_sched_fifo(max(1, self._realtime - 1))
            self._rt_helpers = ok if self._rt_helpers is None else (self._rt_helpers and ok)

    def _now(self) -> float:
        return time.monotonic_ns() * 1e-9

    def _log(self, tag: str, text: str) -> None:
        if not self._log_on:
            return
        t = (time.monotonic_ns() - self._t_start) * 1e-9
        with self._log_lock:
            try:
                self._log_stream.write(f"{t:.4f} {tag} {text}\n")
                self._log_stream.flush()
            except (OSError, ValueError):
                pass

    def _reset_stats_locked(self) -> None:
        self._pt_received = 0
        self._pt_accepted = 0
        self._pt_rejected: Counter = Counter()
        self._planned_accepted = 0
        self._planned_refused: Counter = Counter()
        self._pushes = 0
        self._period_err_ns: deque[int] = deque(maxlen=_PERIOD_SAMPLES_KEPT)
        self._last_push_ns: int | None = None
        self._checksum = 0
        self._checksum_i = 0
        self._arrivals: deque[int] = deque(maxlen=_ARRIVALS_KEPT)

    def _advance_locked(self, now: float) -> list[Completion]:
        self.arm.advance_to(now)
        return self.arm.pop_events() + self.gripper.advance_to(now)

    def _dispatch(self, events: list[Completion]) -> None:
        for ev in events:
            c = ev.owner
            if isinstance(c, _Client) and c.alive:
                c.send(proto.trajectory_state_event(ev.ok, ev.device, ev.trajectory_connect))

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    # ------------------------------------------------------------------------------------ stats
    def stats(self, arrivals: bool = False) -> dict:
        """The ``kinebridge_sim_stats`` reply (see the module docstring)."""
        with self._lock:
            out = {"command": "kinebridge_sim_stats",
                   "passthrough": {"received": self._pt_received, "accepted": self._pt_accepted,
                                   "rejected": dict(self._pt_rejected), "checksum": self._checksum},
                   "planned_moves": {"accepted": self._planned_accepted, "refused": dict(self._planned_refused)},
                   "push": {"sent": self._pushes, "cycle_ms": self._push_cycle * 5, "sched_fifo": self._rt,
                            "tcp_threads_sched_fifo": bool(self._rt_helpers),
                            "period_error_us": _percentiles_us(list(self._period_err_ns))},
                   "clients": len(self._clients), "dropped_clients": self._dropped,
                   "uptime_s": round((time.monotonic_ns() - self._t_start) * 1e-9, 3)}
            if arrivals:
                out["arrival_ns"] = list(self._arrivals)
        return out

    def reset_stats(self) -> None:
        """Zero every counter, the checksum, the arrival stamps and the push period samples."""
        with self._lock:
            self._reset_stats_locked()

    def pause_push(self, seconds: float) -> None:
        """Send no state push for ``seconds`` while every TCP connection stays up (a pulled push cable,
        a dead UDP path); 0 resumes at once."""
        with self._lock:
            self._push_paused_until_ns = time.monotonic_ns() + int(seconds * 1e9)

    def drop_clients(self, how: str = "fin", except_client=None, pause_push_s: float = 0.0) -> int:
        """End every client connection from the controller's side (``how``: ``"fin"`` or ``"rst"``), as a
        controller reboot or a broken cable would; ``pause_push_s`` > 0 also stops the state push for
        that long (a rebooting controller pushes nothing). Returns how many connections were dropped."""
        if how not in ("fin", "rst"):
            raise ValueError(f"how must be 'fin' or 'rst', got {how!r}")
        with self._lock:
            victims = [cl for cl in self._clients.values() if cl is not except_client]
            if pause_push_s > 0:
                self._push_paused_until_ns = time.monotonic_ns() + int(pause_push_s * 1e9)
        for cl in victims:
            self._log("DROP " + how, cl.peer)
            cl.drop(how)
        with self._lock:
            self._dropped += len(victims)
        return len(victims)

    # ---------------------------------------------------------------------------------- TCP side
    def _accept_loop(self) -> None:
        self._helper_thread_priority()
        while self._running:
            try:
                sock, addr = self._tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            with self._lock:
                cid = self._next_cid
                self._next_cid += 1
                client = _Client(cid, sock, addr, self._log if self._log_on else None)
                self._clients[cid] = client
            self._log("CONN", client.peer)
            client.on_start = self._helper_thread_priority
            client.writer.start()
            th = threading.Thread(target=self._read_loop, args=(client,), name=f"sim-rx-{cid}", daemon=True)
            th.start()

    def _read_loop(self, client: _Client) -> None:
        self._helper_thread_priority()
        reader = proto.FrameReader()
        try:
            while self._running and client.alive:
                try:
                    data = client.sock.recv(_RECV_BYTES)
                except OSError:
                    break
                if not data:
                    break
                t_ns = time.monotonic_ns()
                for line in reader.feed(data):
                    self._handle_line(client, line, t_ns)
        finally:
            self._log("EOF", client.peer)
            with self._lock:
                self._clients.pop(client.id, None)
            client.close()

    def _handle_line(self, client: _Client, line: bytes | None, t_ns: int) -> None:
        try:
            if line is None:
                client.send(proto.error_reply("line too long"))
                return
            if self._log_on:
                self._log("RX " + client.peer, line.decode("utf-8", "replace"))
            try:
                msg = proto.decode(line)
            except ValueError as exc:
                client.send(proto.error_reply(str(exc)))
                return
            if not isinstance(msg, dict):
                client.send(proto.error_reply("message is not a JSON object"))
                return
            cmd = msg.get("command")
            if not isinstance(cmd, str):
                client.send(proto.error_reply("missing or non-string \"command\""))
                return
            handler = HANDLERS.get(cmd)
            if handler is None:
                client.send(proto.error_reply("unknown command", command=cmd))
                return
            reply = handler(self, client, msg, t_ns)
            if reply is not None:
                client.send(reply)
        except Exception as exc:  # noqa: BLE001 - a bad request never kills the reader thread
            self._log("ERR " + client.peer, f"{type(exc).__name__}: {exc}")
            try:
                client.send(proto.error_reply(f"internal error: {type(exc).__name__}"))
            except Exception:  # noqa: BLE001
                pass

    # ---------------------------------------------------------------------------------- UDP side
    def _push_targets_locked(self) -> list[tuple[str, int]]:
        if not self._push_enable or time.monotonic_ns() < self._push_paused_until_ns:
            return []
        if self._push_ip:
            return [(self._push_ip, self._push_cfg_port)]
        return sorted({(c.host, self._push_cfg_port) for c in self._clients.values() if c.alive})

    def _datagram_locked(self) -> bytes:
        arm = self.arm
        pose, quat = arm.flange_pose()
        n = arm.dof
        en = 1 if arm.powered else 0
        js: dict[str, Any] = {
            "joint_current": [0] * n,
            "joint_en_flag": [en] * n,
            "joint_err_code": [0] * n,
            "joint_position": proto.rad_to_deg_milli(arm.q),
            "joint_temperature": [30000] * n,
            "joint_voltage": [24000] * n,
        }
        if self._push_custom.get("joint_speed", True):
            js["joint_speed"] = proto.rad_s_to_centideg_s(arm.qd)
        msg: dict[str, Any] = {}
        if self._push_custom.get("arm_current_status", True):
            msg["arm_current_status"] = arm.status
        msg["err"] = arm.error_list
        msg["joint_status"] = js
        msg["state"] = "realtime_arm_joint_state"
        msg["waypoint"] = {"euler": proto.rad_to_mrad(pose[3:6]), "position": proto.m_to_um(pose[:3]),
                           "quat": proto.quat_to_wire(quat[3:7])}
        return json.dumps(msg, separators=(",", ":")).encode("utf-8")

    def _push_loop(self) -> None:
        set_timer_slack_ns(1)
        if self._realtime:
            self._rt = try_sched_fifo(self._realtime)
        period = self._push_cycle * 5_000_000
        deadline = time.monotonic_ns() + period
        while self._running:
            _sleep_until(deadline)
            now_ns = time.monotonic_ns()
            new_period = period
            try:
                with self._lock:
                    events = self._advance_locked(now_ns * 1e-9)
                    targets = self._push_targets_locked()
                    data = self._datagram_locked() if targets else None
                    if data is not None:
                        last = self._last_push_ns
                        if last is not None:
                            self._period_err_ns.append(abs(now_ns - last - period))
                        self._last_push_ns = now_ns
                    else:
                        self._last_push_ns = None
                    new_period = self._push_cycle * 5_000_000
                if data is not None:
                    sent = 0
                    for addr in targets:
                        try:
                            self._udp.sendto(data, addr)
                            sent += 1
                        except OSError:
                            pass
                    with self._lock:
                        self._pushes += sent
                self._dispatch(events)
            except Exception as exc:  # noqa: BLE001 - the push thread must survive anything
                self._log("ERR push", f"{type(exc).__name__}: {exc}")
            if new_period != period:
                period = new_period
                with self._lock:
                    self._last_push_ns = None
                deadline = time.monotonic_ns() + period
                continue
            deadline += period
            late = time.monotonic_ns() - deadline
            if late > 0:                       # fell behind by more than a period: skip, never burst
                deadline += (late // period + 1) * period

    # ------------------------------------------------------------------------------- arm replies
    def _state_locked(self) -> tuple[list[int], list[int]]:
        pose, _ = self.arm.flange_pose()
        return proto.rad_to_deg_milli(self.arm.q), proto.pose_to_wire(pose)

    def _locked_advance(self, t_ns: int) -> list[Completion]:  # noqa: ARG002 - always up to now
        return self._advance_locked(time.monotonic_ns() * 1e-9)


# ------------------------------------------------------------------------------------- handlers
# Each handler: (sim, client, msg, t_ns) -> reply dict or None. They run on the client's reader thread.
def _h_software_info(sim: SimController, c, m, t):
    return proto.software_info_reply(sim.model, sim.gen)


def _h_current_trajectory(sim, c, m, t):
    with sim._lock:
        ev = sim._locked_advance(t)
        kind = sim.arm.trajectory_type()
        if kind == "movel":
            pose, _ = sim.arm.flange_pose()
            data = proto.pose_to_wire(pose)
        else:
            data = proto.rad_to_deg_milli(sim.arm.q)
    sim._dispatch(ev)
    return proto.current_trajectory_reply(kind, data)


def _h_get_realtime_push(sim, c, m, t):
    with sim._lock:
        ip = sim._push_ip or c.host
        return proto.realtime_push_reply("get_realtime_push", sim._push_cycle, sim._push_enable,
                                         sim._push_cfg_port, ip, custom={k: bool(v) for k, v in sim._push_custom.items()})


def _h_set_realtime_push(sim, c, m, t):
    enable = _bool(m, "enable", True)
    cycle = _int(m, "cycle", 1, 100, None)
    port = _int(m, "port", 1, 65535, None)
    ip = m.get("ip", "")
    custom = m.get("custom", {})
    ok = enable is not None and cycle is not None and port is not None and isinstance(ip, str) \
        and isinstance(custom, dict)
    if ok and ip:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            ok = False
    if ok:
        with sim._lock:
            sim._push_enable = enable
            sim._push_cycle = cycle
            sim._push_cfg_port = port
            sim._push_ip = ip or None
            for k in ("joint_speed", "arm_current_status"):
                v = custom.get(k)
                if isinstance(v, bool) or v in (0, 1):
                    sim._push_custom[k] = bool(v)
    return {"command": "set_realtime_push", "state": bool(ok)}


def _h_work_frame(sim, c, m, t):
    return {"state": "current_work_frame", "frame_name": "World", "pose": [0, 0, 0, 0, 0, 0]}


def _h_tool_frame(sim, c, m, t):
    return {"state": "current_tool_frame", "tool_name": "Arm_Tip", "pose": [0, 0, 0, 0, 0, 0], "payload": 0,
            "position": [0, 0, 0]}


def _h_install_pose(sim, c, m, t):
    return {"state": "install_pose", "pose": [0, 0, 0]}


def _h_min_pos(sim, c, m, t):
    return {"state": "joint_min_pos", "min_pos": proto.rad_to_deg_milli(sim.arm.limits.q_min)}


def _h_max_pos(sim, c, m, t):
    return {"state": "joint_max_pos", "max_pos": proto.rad_to_deg_milli(sim.arm.limits.q_max)}


def _h_max_acc(sim, c, m, t):
    return {"state": "joint_max_acc", "joint_acc": proto.rad_s2_to_rpm_milli_s(sim.arm.limits.qdd_max)}


def _h_max_speed(sim, c, m, t):
    return {"state": "joint_max_speed", "joint_speed": proto.rad_s_to_rpm_milli(sim.arm.limits.qd_max)}


def _h_dh(sim, c, m, t):
    return proto.dh_reply(sim.d7)


def _h_arm_state(sim, c, m, t):
    with sim._lock:
        ev = sim._locked_advance(t)
        joint, pose = sim._state_locked()
        err = sim.arm.error_list
    sim._dispatch(ev)
    return proto.arm_state_reply(joint, pose, err)


def _h_joint_degree(sim, c, m, t):
    with sim._lock:
        ev = sim._locked_advance(t)
        joint = proto.rad_to_deg_milli(sim.arm.q)
    sim._dispatch(ev)
    return proto.joint_degree_reply(joint)


def _h_controller_state(sim, c, m, t):
    with sim._lock:
        err = sim.arm.errors[0] if sim.arm.errors else 0
    return {"state": "controller_state", "voltage": 24000, "current": 1500, "temperature": 42000, "err_flag": err}


def _h_all_state(sim, c, m, t):
    with sim._lock:
        n = sim.arm.dof
        en = 1 if sim.arm.powered else 0
        err = sim.arm.error_list
    return {"state": "arm_all_state",
            "all_state": {"temperature": [30000] * n, "current": [0] * n, "voltage": [24000] * n,
                          "err_flag": [0] * n, "en_flag": [en] * n, "err": err}}


def _h_power_state(sim, c, m, t):
    with sim._lock:
        return {"state": "arm_power_state", "power_state": 1 if sim.arm.powered else 0}


def _h_set_power(sim, c, m, t):
    on = _int(m, "arm_power", 0, 1)
    if on is None:
        return proto.flag_reply("set_arm_power", "arm_power", False)
    with sim._lock:
        ev = sim._locked_advance(t)
        sim.arm.set_power(bool(on))
    sim._dispatch(ev)
    return proto.flag_reply("set_arm_power", "arm_power", True)


def _h_clear_err(sim, c, m, t):
    with sim._lock:
        sim.arm.clear_errors()
    return {"command": "clear_system_err", "clear_state": True}


def _stop_family(method: str, field: str):
    def handler(sim, c, m, t):
        with sim._lock:
            ev = sim._locked_advance(t)
            ok = getattr(sim.arm, method)()
        sim._dispatch(ev)
        return proto.flag_reply(m["command"], field, ok)
    return handler


def _planned(kind: str):
    def handler(sim, c, m, t):
        v = _int(m, "v", 1, 100)
        connect = _int(m, "trajectory_connect", 0, 1, 0)
        if kind == "movej":
            target = _int_list(m, "joint", sim.arm.dof)
            arg = None if target is None else proto.deg_milli_to_rad(target)
        else:
            pose = m.get("pose")
            arg = None
            if isinstance(pose, list) and len(pose) in (6, 7):
                ints = _int_list(m, "pose", len(pose))
                if ints is not None:
                    try:
                        arg = proto.pose_from_wire(ints) if len(ints) == 6 else proto.pose_quat_from_wire(ints)
                    except ValueError:
                        arg = None
        if v is None or connect is None or arg is None:
            with sim._lock:
                sim._planned_refused["bad_value"] += 1
            return proto.receive_state_reply(kind, False)
        arm = sim.arm
        plan_fn = {"movej": arm.plan_movej, "movel": arm.plan_movel, "movej_p": arm.plan_movej_p}[kind]
        with sim._lock:
            ev = sim._locked_advance(t)
            reason = arm.motion_refusal()
            q0 = arm.plan_start()
        if reason is None:
            plan = plan_fn(arg, v, q0, connect, c)          # the IK runs without holding the lock
            with sim._lock:
                ev += sim._locked_advance(t)
                reason = arm.commit(plan)
                if reason == "stale":                       # the queue changed meanwhile: plan again
                    reason = arm.commit(plan_fn(arg, v, arm.plan_start(), connect, c))
        with sim._lock:
            if reason is None:
                sim._planned_accepted += 1
            else:
                sim._planned_refused[reason] += 1
        sim._dispatch(ev)
        return proto.receive_state_reply(kind, reason is None)
    return handler


def _passthrough_point(sim, t, target, follow, stream, checksum_joint=None) -> None:
    """Count one pass-through point, then hand it to the arm (``stream(target, follow, t_s)``).

    ``target`` None (or ``follow`` None) means the point was malformed: counted as ``bad_value``."""
    with sim._lock:
        sim._pt_received += 1
        sim._arrivals.append(t)
        if target is None or follow is None:
            sim._pt_rejected["bad_value"] += 1
            return None
        if checksum_joint is not None:
            sim._checksum = (sim._checksum + (sim._checksum_i + 1) * sum(checksum_joint)) % _CHECKSUM_MOD
            sim._checksum_i += 1
        ev = sim._locked_advance(t)
        reason = stream(target, follow, t * 1e-9)
        if reason is None:
            sim._pt_accepted += 1
        else:
            sim._pt_rejected[reason] += 1
    sim._dispatch(ev)
    return None


def _h_movej_canfd(sim, c, m, t):
    joint = _int_list(m, "joint", sim.arm.dof)
    q = None if joint is None else proto.deg_milli_to_rad(joint)
    return _passthrough_point(sim, t, q, _bool(m, "follow", False), sim.arm.stream_joint, joint)


def _h_movep_canfd(sim, c, m, t):
    pose = None
    try:
        if "pose_quat" in m:
            ints = _int_list(m, "pose_quat", 7)
            pose = None if ints is None else proto.pose_quat_from_wire(ints)
        else:
            ints = _int_list(m, "pose", 6)
            pose = None if ints is None else proto.pose_from_wire(ints)
    except ValueError:
        pose = None
    return _passthrough_point(sim, t, pose, _bool(m, "follow", False), sim.arm.stream_pose)


def _gripper(kind: str):
    def handler(sim, c, m, t):
        block = _bool(m, "block", False)
        if kind == "position":
            arg = _int(m, "position", 1, 1000)
        elif kind in ("pick", "pick_on"):
            arg = _int(m, "speed", 1, 1000)
            if _int(m, "force", 1, 1000) is None:
                arg = None
        else:
            arg = _int(m, "speed", 1, 1000)
        if arg is None or block is None:
            return {"command": "set_gripper", "state": False}
        with sim._lock:
            ev = sim._locked_advance(t)
            g = sim.gripper
            target = {"position": arg, "pick": g.route[0], "pick_on": g.route[0], "release": g.route[1]}[kind]
            force = _int(m, "force", 1, 1000) or 0
            g.command(target, max(t, time.monotonic_ns()) * 1e-9, owner=c, block=block, force=force)
        sim._dispatch(ev)
        return {"command": "set_gripper", "state": True}
    return handler


def _h_gripper_route(sim, c, m, t):
    lo, hi = _int(m, "min", 0, 1000), _int(m, "max", 0, 1000)
    ok = lo is not None and hi is not None and lo < hi
    if ok:
        with sim._lock:
            sim.gripper.route = (lo, hi)
    return {"command": "set_gripper_route", "state": ok}


def _h_gripper_state(sim, c, m, t):
    with sim._lock:
        ev = sim._locked_advance(t)
        g = sim.gripper
        reply = {"command": "get_gripper_state", "enable": 1, "status": 1, "error": 0, "mode": 1,
                 "current_force": g.force if not g.moving else 0, "temperature": 40,
                 "actpos": proto.wire_int(g.position)}
    sim._dispatch(ev)
    return reply


def _h_stats(sim, c, m, t):
    return sim.stats(arrivals=m.get("arrivals") is True)


def _h_reset_stats(sim, c, m, t):
    sim.reset_stats()
    return {"command": "kinebridge_sim_reset_stats", "state": True}


def _h_drop_clients(sim, c, m, t):
    how = m.get("how", "fin")
    pause = m.get("pause_push_s", 0)
    if how not in ("fin", "rst") or isinstance(pause, bool) or not isinstance(pause, (int, float)) \
            or not 0 <= pause <= 60:
        return {"command": "kinebridge_sim_drop_clients", "state": False, "dropped": 0}
    return {"command": "kinebridge_sim_drop_clients", "state": True,
            "dropped": sim.drop_clients(how, except_client=c, pause_push_s=float(pause))}


def _h_pause_push(sim, c, m, t):
    pause = m.get("pause_s", 0)
    if isinstance(pause, bool) or not isinstance(pause, (int, float)) or not 0 <= pause <= 60:
        return {"command": "kinebridge_sim_pause_push", "state": False}
    sim.pause_push(float(pause))
    return {"command": "kinebridge_sim_pause_push", "state": True}


#: command → handler. These are the requests the simulator understands.
HANDLERS: dict[str, Callable] = {
    # connect handshake (SDK 1.1.6 order)
    "get_arm_software_info": _h_software_info,
    "get_arm_current_trajectory": _h_current_trajectory,
    "get_realtime_push": _h_get_realtime_push,
    "get_current_work_frame": _h_work_frame,
    "get_current_tool_frame": _h_tool_frame,
    "get_install_pose": _h_install_pose,
    "get_joint_min_pos": _h_min_pos,
    "get_joint_max_pos": _h_max_pos,
    "get_joint_max_acc": _h_max_acc,
    "get_joint_max_speed": _h_max_speed,
    "get_DH_data": _h_dh,
    # state
    "get_current_arm_state": _h_arm_state,
    "get_joint_degree": _h_joint_degree,
    "get_controller_state": _h_controller_state,
    "get_arm_all_state": _h_all_state,
    "get_arm_power_state": _h_power_state,
    # planned moves
    "movej": _planned("movej"),
    "movel": _planned("movel"),
    "movej_p": _planned("movej_p"),
    # pass-through
    "movej_canfd": _h_movej_canfd,
    "movep_canfd": _h_movep_canfd,
    # stop family, power, errors
    "set_arm_stop": _stop_family("quick_stop", "arm_stop"),
    "set_arm_slow_stop": _stop_family("slow_stop", "arm_slow_stop"),
    "set_arm_pause": _stop_family("pause", "arm_pause"),
    "set_arm_continue": _stop_family("resume", "arm_continue"),
    "set_delete_current_trajectory": _stop_family("delete_trajectory", "delete_current_trajectory"),
    "set_arm_delete_trajectory": _stop_family("delete_trajectory", "arm_delete_trajectory"),
    "set_arm_power": _h_set_power,
    "clear_system_err": _h_clear_err,
    # UDP push
    "set_realtime_push": _h_set_realtime_push,
    # gripper
    "set_gripper_position": _gripper("position"),
    "set_gripper_pick": _gripper("pick"),
    "set_gripper_pick_on": _gripper("pick_on"),
    "set_gripper_release": _gripper("release"),
    "set_gripper_route": _h_gripper_route,
    "get_gripper_state": _h_gripper_state,
    # kinebridge extensions
    "kinebridge_sim_stats": _h_stats,
    "kinebridge_sim_reset_stats": _h_reset_stats,
    "kinebridge_sim_drop_clients": _h_drop_clients,
    "kinebridge_sim_pause_push": _h_pause_push,
}


# -------------------------------------------------------------------------------------- timing
def _sleep_until(deadline_ns: int) -> None:
    """Sleep until shortly before ``deadline_ns`` (CLOCK_MONOTONIC), then yield-spin to it."""
    while True:
        rem = deadline_ns - time.monotonic_ns()
        if rem <= 0:
            return
        if rem > _SPIN_NS:
            time.sleep((rem - _SPIN_NS) * 1e-9)
        else:
            time.sleep(0)                  # releases the GIL while spinning


def _warm_up_kinematics(d7: float) -> None:
    """Compile / load the Numba kinematics before the first request needs them."""
    q = np.asarray(kin.Q_HOME, dtype=float)
    kin.fk_pose(q, d7)
    kin.fk_quat(q, d7)
    T = kin.fk(q, d7)
    kin.ik(T, q, d7=d7)
    kin.ik_path(np.stack([T, T]), q, d7)


# ----------------------------------------------------------------------------------- subprocess
def request(host: str, port: int, msg: dict, timeout: float = 5.0, want: str | None = None) -> dict:
    """One request/reply on a fresh TCP connection (replies are matched on ``command``/``state``: the
    request's command, or ``want`` — e.g. ``get_joint_degree`` is answered with state ``joint_degree``)."""
    want = want or msg.get("command")
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(proto.encode(msg))
        reader = proto.FrameReader(max_line=64 * 1024 * 1024)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = s.recv(1 << 20)
            if not data:
                break
            for line in reader.feed(data):
                if line is None:
                    continue
                reply = json.loads(line)
                if isinstance(reply, dict) and want in (reply.get("command"), reply.get("state")):
                    return reply
    raise TimeoutError(f"no reply to {want!r} from {host}:{port} within {timeout} s")


class SimProcess:
    """A simulator running in a child process (see :func:`spawn_sim`)."""

    def __init__(self, proc: subprocess.Popen, host: str, port: int, push_port: int, stderr_path: str | None):
        self.proc = proc
        self.host, self.port, self.push_port = host, port, push_port
        self._stderr_path = stderr_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the link drops without any goodbye (tests of dropped links)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def terminate(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def request(self, msg: dict, timeout: float = 5.0) -> dict:
        """Send one request on a short-lived TCP connection and return the reply (for the extensions)."""
        return request(self.host, self.port, msg, timeout)

    def stats(self, arrivals: bool = False) -> dict:
        """``kinebridge_sim_stats`` (with ``arrival_ns`` if ``arrivals``)."""
        return self.request({"command": "kinebridge_sim_stats", "arrivals": bool(arrivals)})

    def reset_stats(self) -> None:
        self.request({"command": "kinebridge_sim_reset_stats"})

    def pause_push(self, seconds: float) -> None:
        """``kinebridge_sim_pause_push``: no state push for ``seconds``, TCP untouched."""
        reply = self.request({"command": "kinebridge_sim_pause_push", "pause_s": seconds})
        if not reply.get("state"):
            raise ValueError(f"the simulator refused kinebridge_sim_pause_push pause_s={seconds!r}: {reply}")

    def drop_clients(self, how: str = "fin", pause_push_s: float = 0.0) -> int:
        """``kinebridge_sim_drop_clients``: the controller ends every connection (FIN or RST)."""
        reply = self.request({"command": "kinebridge_sim_drop_clients", "how": how, "pause_push_s": pause_push_s})
        if not reply.get("state"):
            raise ValueError(f"the simulator refused kinebridge_sim_drop_clients how={how!r}: {reply}")
        return int(reply["dropped"])

    def stderr_text(self) -> str:
        if not self._stderr_path:
            return ""
        try:
            with open(self._stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _reap(self) -> None:
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdout, self.proc.stdin):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        if self._stderr_path:
            try:
                os.unlink(self._stderr_path)
            except OSError:
                pass
            self._stderr_path = None

    def __enter__(self) -> "SimProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.terminate()


def spawn_sim(port: int = 0, push_port: int = 0, host: str = "127.0.0.1", cycle: int = 1, model: str = "RM75-B",
              gen: int = 3, log: bool = False, timeout: float = 30.0, python: str | None = None,
              rt_priority: int = 10, initial_joints_deg=None, joint_speed_scale: float = 1.0,
              should_stop=None, progress=None) -> SimProcess:
    """Start ``python -m kinebridge.drivers.realman.sim.controller`` and wait until it accepts TCP.

    ``port``/``push_port`` 0 let the child pick free ports; they are read from its ready line. Raises
    ``RuntimeError`` (with the child's stderr) if it exits or is not ready within ``timeout`` s. The
    child holds a pipe from this process on its stdin and shuts down when that closes, so it never
    outlives its parent (even one killed with SIGKILL). ``rt_priority``: SCHED_FIFO priority of its
    push thread where permitted (0 = normal scheduling). ``initial_joints_deg``: where the arm starts.
    """
    import select

    args = [python or sys.executable, "-m", "kinebridge.drivers.realman.sim.controller", "--host", host,
            "--port", str(int(port)), "--push-port", str(int(push_port)), "--cycle", str(int(cycle)),
            "--model", model, "--gen", str(int(gen)), "--exit-with-stdin"]
    if log:
        args.append("--log")
    if initial_joints_deg is not None:
        args.append("--initial-joints=" + ",".join(f"{float(x):.9g}" for x in initial_joints_deg))
    if joint_speed_scale != 1.0:
        args += ["--joint-speed-scale", repr(float(joint_speed_scale))]
    args += ["--rt-priority", str(int(rt_priority))]
    fd, err_path = tempfile.mkstemp(prefix="kinebridge-sim-", suffix=".stderr")
    with os.fdopen(fd, "wb") as err_file:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err_file, stdin=subprocess.PIPE)
    sp = SimProcess(proc, host, 0, 0, err_path)
    t_spawn = time.monotonic()
    deadline = t_spawn + timeout
    next_note = t_spawn + 5.0
    buf = b""
    while True:
        if should_stop is not None and should_stop():
            sp.kill()
            raise RuntimeError("stopped while the simulated controller was starting")
        if progress is not None and time.monotonic() >= next_note:
            next_note += 5.0
            progress(f"waiting {time.monotonic() - t_spawn:.0f} s for the simulated controller (its first start "
                     f"on a machine compiles the kinematics kernels)")
        rem = deadline - time.monotonic()
        if rem <= 0:
            text = sp.stderr_text()
            sp.kill()
            raise RuntimeError(f"simulated controller not ready within {timeout:.0f} s "
                               f"(`{' '.join(args)}`); stderr:\n{text[-2000:]}")
        r, _, _ = select.select([proc.stdout], [], [], min(rem, 0.1))
        if r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(1.0)
                text = sp.stderr_text()
                sp.kill()
                raise RuntimeError(f"simulated controller exited with code {proc.returncode} before it was "
                                   f"ready (`{' '.join(args)}`); stderr:\n{text[-2000:]}")
            buf += chunk
            if b"\n" in buf:
                line = buf.split(b"\n", 1)[0]
                try:
                    ready = json.loads(line)
                    sp.port, sp.push_port = int(ready["port"]), int(ready["push_port"])
                except (ValueError, KeyError, TypeError):
                    text = sp.stderr_text()
                    sp.kill()
                    raise RuntimeError(f"simulated controller printed an unexpected ready line {line!r}; "
                                       f"stderr:\n{text[-2000:]}") from None
                return sp
        elif proc.poll() is not None:
            text = sp.stderr_text()
            sp.kill()
            raise RuntimeError(f"simulated controller exited with code {proc.returncode} before it was ready; "
                               f"stderr:\n{text[-2000:]}")


# ---------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kinebridge.drivers.realman.sim.controller",
        description="Simulated RealMan RM75 controller (JSON/TCP + UDP push, as RealMan's SDK 1.1.6 expects).")
    add_arguments(p)
    return p


def serve(args: argparse.Namespace) -> int:
    """Run a simulator from parsed options until SIGINT/SIGTERM; prints the ready line on stdout."""
    sys.setswitchinterval(0.0005)      # bound GIL hand-over delays to 0.5 ms (this process only)
    try:
        q0 = None
        if getattr(args, "initial_joints", None):
            try:
                q0 = np.radians([float(x) for x in args.initial_joints.split(",")])
            except ValueError:
                raise ValueError(f"--initial-joints: expected 7 comma-separated angles in degrees, "
                                 f"got {args.initial_joints!r}") from None
            if q0.shape != (7,):
                raise ValueError(f"--initial-joints: expected 7 angles, got {q0.size}")
        sim = SimController(args.host, args.port, args.push_port, args.cycle, args.model, args.gen, q0=q0,
                            joint_speed_scale=getattr(args, "joint_speed_scale", 1.0),
                            log=args.log, realtime=getattr(args, "rt_priority", 0))
        sim.start()
        if sim._realtime:      # the main thread takes the GIL too (signals, shutdown): not behind normal work either
            sim._helper_thread_priority()
    except (OSError, ValueError) as exc:
        print(f"kinebridge sim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(json.dumps({"event": "ready", "host": args.host, "port": sim.port, "push_port": sim.push_port,
                      "pid": os.getpid(), "model": args.model, "gen": args.gen}), flush=True)
    stop = threading.Event()
    if getattr(args, "exit_with_stdin", False):
        def _watch_stdin():                 # EOF on stdin: the parent (spawn_sim's caller) has gone
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except (OSError, ValueError):
                pass
            stop.set()
        threading.Thread(target=_watch_stdin, name="sim-parent-watch", daemon=True).start()
    sim.serve_forever(stop)
    return 0


def main(argv=None) -> int:
    return serve(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
