"""The node base: one process, one publishing socket, one listening socket, a heartbeat.

A node is started by the supervisor as ``python -m kinebridge.runtime.node --config-json F --name N``
(a fresh interpreter per node, so a crash or a hung GIL in one cannot take the others down). The
base class owns the bus sockets, the heartbeat (``heartbeat`` topic, ``supervisor.heartbeat_hz``)
and clean shutdown on SIGTERM/SIGINT; a node implements :meth:`setup`, :meth:`on_message`,
:meth:`on_tick` and :meth:`teardown`, or replaces :meth:`loop` (the control node paces itself).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import zmq

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.codec import Message
from kinebridge.runtime.bus.sockets import CurveKeys, Publisher, Subscriber, io_thread_fifo
from kinebridge.runtime.config import RuntimeConfig
from kinebridge.runtime.supervisor.kinds import kind_of

__all__ = ["Node", "node_class", "main"]


class Node:
    """Base of every runtime node. ``topics``: what it listens to (exact names)."""

    topics: tuple[str, ...] = ()
    tick_hz: float = 20.0

    def __init__(self, name: str, cfg: RuntimeConfig):
        self.name = name
        self.cfg = cfg
        self.kind = cfg.nodes[name].kind if name in cfg.nodes else name
        self.detail: dict = {}
        self.ctx = zmq.Context()
        self._io_realtime(self.io_priority(cfg))
        curve = CurveKeys(cfg.bus.curve_keys, name) if cfg.bus.curve_keys else None
        names = cfg.bus.names()
        self.pub = Publisher(cfg.endpoint(name), name, ctx=self.ctx, sndhwm=cfg.bus.sndhwm, curve=curve,
                             kind=self.kind, names=names)
        servers = cfg.endpoints(exclude=name)
        self.sub = Subscriber(list(servers), self.subscriptions(), ctx=self.ctx, rcvhwm=cfg.bus.rcvhwm, curve=curve,
                              servers=servers, name=name, names=names,
                              max_message_bytes=int(cfg.bus.max_message_mb * (1 << 20)))
        self.status = "starting"
        # where the supervisor keeps this run's logs and state (the node's own files go under state/)
        run_dir = os.environ.get("KINEBRIDGE_RUN_DIR")
        self.run_dir = Path(run_dir) if run_dir else None        # None: a node run outside a supervisor
        self._stop = threading.Event()
        self._hb_period = 1.0 / cfg.supervisor.heartbeat_hz
        self._next_hb = 0.0
        self.started_ns = time.monotonic_ns()

    # ------------------------------------------------------------------------- to override
    def io_priority(self, cfg: RuntimeConfig) -> int:
        """SCHED_FIFO priority for ZeroMQ's I/O thread (0 = normal scheduling)."""
        return 0

    def _io_realtime(self, priority: int) -> None:
        note = io_thread_fifo(self.ctx, priority)
        if note:
            self.detail["io_thread"] = note

    def subscriptions(self) -> tuple[str, ...]:
        """The topics this node listens to (``topics`` unless the config decides)."""
        return self.topics

    def setup(self) -> None:
        """Load models, connect hardware; the node reports ``ready`` after this returns."""

    def on_message(self, msg: Message) -> None:
        """One message on a subscribed topic."""

    def on_tick(self, now: float) -> None:
        """Called at least ``tick_hz`` times a second."""

    def teardown(self) -> None:
        """Release what setup acquired; runs on every exit path."""

    # ---------------------------------------------------------------------------- plumbing
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def heartbeat(self, now: float | None = None, force: bool = False) -> None:
        """Publish the heartbeat if one is due (``force``: now)."""
        now = time.monotonic() if now is None else now
        if not force and now < self._next_hb:
            return
        self._next_hb = now + self._hb_period
        c = self.sub.counters
        detail = dict(self.detail)
        if c.dropped:
            detail["dropped"] = dict(c.dropped)
        self.pub.send(M.Heartbeat(node=self.name, kind=self.kind, pid=os.getpid(), status=self.status,
                                  received=c.received, malformed=c.malformed, gaps=c.gaps,
                                  last_error=None if c.last_error is None else c.last_error[:500], detail=detail))

    def loop(self) -> None:
        """Default loop: wait for messages, tick at ``tick_hz``, heartbeat."""
        period = 1.0 / self.tick_hz
        next_tick = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, min(next_tick, self._next_hb) - time.monotonic())
            msg = self.sub.recv(timeout_ms=int(timeout * 1e3) + 1)
            while msg is not None:
                self.on_message(msg)
                msg = self.sub.recv(timeout_ms=0)
            now = time.monotonic()
            if now >= next_tick:
                self.on_tick(now)
                next_tick = max(next_tick + period, now)
            self.heartbeat(now)

    def _heartbeat_during_setup(self, done: threading.Event) -> None:
        """Heartbeats while :meth:`setup` runs (a skill fit, a model load, an arm connect can take seconds
        to minutes on a loaded box): the supervisor sees the node alive and what it is doing. ``setup``
        publishes nothing itself, so this thread is the socket's only user until it ends."""
        while not done.wait(self._hb_period):
            self.heartbeat(force=True)

    def run(self) -> int:
        """setup → ready → loop until SIGTERM/SIGINT/stop() → teardown. Returns the exit code."""
        self._install_signals()
        code = 0
        try:
            self.heartbeat(force=True)
            done = threading.Event()
            beat = threading.Thread(target=self._heartbeat_during_setup, args=(done,), name="setup-heartbeat",
                                    daemon=True)
            beat.start()
            try:
                self.setup()
            finally:
                done.set()
                beat.join()
            if self.stopping:
                raise _Interrupted()
            self.status = "ready"
            self.heartbeat(force=True)
            self.loop()
            self.status = "stopped"
        except _Interrupted:
            self.status = "stopped"         # SIGTERM during setup: a clean stop, not a failure
        except Exception as exc:
            self.status = "failed"
            self.detail["error"] = f"{type(exc).__name__}: {exc}"
            print(f"kinebridge node {self.name!r} failed: {exc}", file=sys.stderr)
            traceback.print_exc()
            code = 1
        finally:
            try:
                self.teardown()
            except Exception as exc:  # teardown must not hide the original failure
                print(f"kinebridge node {self.name!r}: teardown failed: {exc}", file=sys.stderr)
                code = code or 1
            try:
                self.heartbeat(force=True)
                time.sleep(0.01)  # let the last heartbeat leave
            finally:
                self.pub.close()
                self.sub.close()
                self.ctx.term()
        return code

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            self._stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


class _Interrupted(Exception):
    """SIGTERM/SIGINT arrived while the node was setting up."""


def die_with_parent(parent_pid: int | None) -> None:
    """Ask the kernel for SIGTERM when the parent (the supervisor) dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG): an orphaned node brings the arm to rest and exits instead of driving it
    unsupervised. If the parent is already gone, exit now."""
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)   # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if parent_pid is not None and os.getppid() != parent_pid:
        sys.exit(3)


def node_class(kind: str):
    """The class implementing node ``kind`` (see :mod:`kinebridge.runtime.supervisor.kinds`)."""
    module, cls = kind_of(kind).target.split(":")
    return getattr(importlib.import_module(module), cls)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kinebridge.runtime.node",
                                 description="Run one kinebridge runtime node (the supervisor starts these).")
    ap.add_argument("--config-json", required=True, help="the validated runtime config, as the supervisor wrote it")
    ap.add_argument("--name", required=True, help="which [nodes.NAME] to run")
    ap.add_argument("--parent-pid", type=int, default=None,
                    help="the supervisor's pid: the node stops (SIGTERM) when that process dies")
    args = ap.parse_args(argv)
    die_with_parent(args.parent_pid)
    sys.stdout.reconfigure(line_buffering=True)
    with open(args.config_json) as f:
        cfg = RuntimeConfig.model_validate_json(f.read())
    if args.name not in cfg.nodes:
        print(f"no node {args.name!r} in the config; nodes: {sorted(cfg.nodes)}", file=sys.stderr)
        return 2
    node = node_class(cfg.nodes[args.name].kind)(args.name, cfg)
    return node.run()


if __name__ == "__main__":
    sys.exit(main())
