"""kinebridge's bus: named topics over ZeroMQ PUB/SUB, one publishing socket per node.

Layout: every node binds one PUB socket at its endpoint (``ipc://`` by default, ``tcp://`` to put a
node on another machine) and connects one SUB socket to the endpoints of the nodes it listens to.
A topic is a plain name (``chunk``, ``control/state``, ``heartbeat``); a subscriber receives a topic
from whichever node publishes it. Frames follow :mod:`kinebridge.runtime.bus.codec`.

Every header is stamped on publish: ``v`` (the schema version), ``seq`` (per topic, from 0),
``stamp_ns`` (CLOCK_MONOTONIC, the clock every node on the machine shares), ``src`` (the publishing
node) and ``derived`` — the :class:`~kinebridge.runtime.bus.messages.Stamp` of each message it was
computed from — so any output can be traced back to its inputs and every stage latency read off a
recording. Nodes publish typed bodies (:meth:`Publisher.send`); every received message is validated
against its topic's schema (:mod:`kinebridge.runtime.bus.messages`) before a node sees it, and what
fails is counted by reason and dropped.

Socket options follow the measurements in ``shared/reference/realtime.md`` §4.3/4.5:

* ``LINGER=0`` everywhere (closing never hangs on unsent data);
* ``IMMEDIATE=1`` on publishers (nothing is queued for a peer whose connection is not complete,
  so a restarted node is never fed stale messages). Not on subscribers: a connecting SUB with
  IMMEDIATE drops its own subscription before the connection completes and then receives nothing
  (measured here) — staleness on the receiving side is handled by the stamps instead;
* bounded high-water marks (a slow subscriber drops, a publisher never blocks: sends are
  ``NOBLOCK``);
* CONFLATE does not work with multipart messages, so "newest value only" is done by
  :meth:`Subscriber.latest`, which drains the queue and keeps the newest message per topic.

A ``tcp://`` endpoint off loopback is refused unless CurveZMQ keys are configured
(:class:`CurveKeys`): publishers are CURVE servers that accept only clients whose public key is in
the key directory, subscribers verify the publisher's key. Nobody without a key can command the arm
or read its state over the network. ``kinebridge keys`` writes the key files.
"""

from __future__ import annotations

import ipaddress
import os
import select
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.codec import Message, MessageError, decode, encode

__all__ = ["BusError", "CurveKeys", "Publisher", "Subscriber", "check_endpoint", "default_ipc_dir",
           "endpoint_is_remote", "write_keys"]

RESERVED = M.RESERVED


class BusError(ValueError):
    """A bus endpoint, key or option that cannot work; the text names it and the fix."""


def default_ipc_dir() -> str:
    """Where ``ipc://`` sockets live unless configured: ``$XDG_RUNTIME_DIR/kinebridge`` or ``/tmp``."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return str(Path(base) / f"kinebridge-{os.getuid()}")


def endpoint_is_remote(endpoint: str) -> bool:
    """Does ``endpoint`` reach beyond this machine (tcp on a non-loopback address)?"""
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", "lo"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name or an interface name ("*", "eth0"): treat as remote


def check_endpoint(endpoint: str, where: str = "endpoint") -> str:
    """Validate an endpoint string; returns it. Raises :class:`BusError` naming ``where``."""
    if not isinstance(endpoint, str):
        raise BusError(f"{where}: expected a string like 'ipc:///tmp/kinebridge/control.sock' or "
                       f"'tcp://127.0.0.1:5750', got {endpoint!r}")
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if not path.startswith("/"):
            raise BusError(f"{where}: ipc endpoints need an absolute path, got {endpoint!r}")
        if len(path.encode()) > 107:
            raise BusError(f"{where}: ipc path is {len(path.encode())} bytes; Unix sockets allow 107 — "
                           f"choose a shorter bus.ipc_dir")
        return endpoint
    if endpoint.startswith("tcp://"):
        hostport = endpoint[len("tcp://"):]
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BusError(f"{where}: tcp endpoints are 'tcp://HOST:PORT' with PORT 1..65535, got {endpoint!r}")
        return endpoint
    raise BusError(f"{where}: unsupported transport in {endpoint!r}; use ipc:// (same machine) or tcp:// "
                   f"(another machine, with CurveZMQ keys)")


@dataclass(frozen=True)
class CurveKeys:
    """CurveZMQ key files for one node: ``<dir>/<node>.key_secret`` (its keypair) and the public
    keys ``<dir>/*.key`` of every node allowed to talk to it."""

    directory: str
    node: str

    def _load(self, name: str, secret: bool):
        import zmq.auth
        path = Path(self.directory) / (f"{name}.key_secret" if secret else f"{name}.key")
        if not path.is_file():
            raise BusError(f"CurveZMQ key file {path} is missing; create the keys with "
                           f"`kinebridge keys --dir {self.directory} {name}` and copy them to each machine")
        try:
            pub, sec = zmq.auth.load_certificate(str(path))
        except Exception as exc:
            raise BusError(f"CurveZMQ key file {path} is unreadable ({exc}); regenerate it with `kinebridge keys`") from exc
        if secret and not sec:
            raise BusError(f"{path} holds no secret key")
        return pub, sec

    def own(self):
        return self._load(self.node, secret=True)

    def public(self, name: str) -> bytes:
        return self._load(name, secret=False)[0]


def write_keys(directory: str, nodes) -> list[str]:
    """Create a CurveZMQ keypair per node in ``directory`` (mode 0700); returns the files written."""
    import zmq.auth
    if not zmq.has("curve"):
        raise BusError("this libzmq was built without CURVE support; install pyzmq's wheels (they bundle libsodium)")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    written = []
    for name in nodes:
        pub, sec = zmq.auth.create_certificates(str(d), name)
        os.chmod(sec, 0o600)
        written += [pub, sec]
    return written


def ipc_in_use(path, settle_s: float = 0.25) -> bool:
    """Does a live process listen on the Unix socket ``path``? (A ZeroMQ ipc endpoint is a stream socket:
    a connect succeeds while its owner lives and is refused once the file is stale.) A listener that was
    just closed in this process lingers for a few ms in ZeroMQ's I/O thread, so a success is re-checked
    for ``settle_s`` before the socket counts as taken."""
    import socket

    def accepts() -> bool:
        if not os.path.exists(path):
            return False
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False
        finally:
            s.close()

    end = time.monotonic() + settle_s
    while accepts():
        if time.monotonic() >= end:
            return True
        time.sleep(0.02)
    return False


def _common(sock: zmq.Socket) -> None:
    sock.setsockopt(zmq.LINGER, 0)


class Publisher:
    """One node's publishing socket: ``publish(topic, header, arrays, derived)`` stamps and sends."""

    def __init__(self, endpoint: str, src: str, *, ctx: zmq.Context | None = None, sndhwm: int = 1000,
                 curve: CurveKeys | None = None, kind: str | None = None, names: M.TopicNames | None = None):
        check_endpoint(endpoint, f"endpoint of node {src!r}")
        if endpoint_is_remote(endpoint) and curve is None:
            raise BusError(f"node {src!r} would publish on {endpoint}, which is reachable from other machines, "
                           f"without CurveZMQ keys; set bus.curve_keys (see `kinebridge keys --help`) or use "
                           f"ipc:// / a loopback address")
        self.src = src
        self.kind = kind            # checked against each topic's publishers (None: not checked)
        self.names = names or M.DEFAULT_NAMES
        self.endpoint = endpoint
        self.ctx = ctx or zmq.Context.instance()
        self._auth = None
        self.sock = None
        self._open(endpoint, curve, sndhwm)
        self._seq: dict[str, int] = {}
        self.sent = 0
        self.dropped = 0

    def _open(self, endpoint: str, curve: CurveKeys | None, sndhwm: int) -> None:
        """Bind this node's PUB socket (CURVE server when keys are configured)."""
        src = self.src
        self.sock = self.ctx.socket(zmq.PUB)
        _common(self.sock)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.setsockopt(zmq.SNDHWM, int(sndhwm))
        if curve is not None:
            pub, sec = curve.own()
            from zmq.auth.thread import ThreadAuthenticator
            self._auth = ThreadAuthenticator(self.ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(curve.directory))
            self.sock.curve_publickey, self.sock.curve_secretkey = pub, sec
            self.sock.curve_server = True
        if endpoint.startswith("ipc://"):
            path = Path(endpoint[len("ipc://"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            if ipc_in_use(path):   # a second bind would silently take the socket over from a live owner
                self.close()
                raise BusError(f"node {src!r} cannot bind {endpoint}: a running process is publishing there "
                               f"(another kinebridge runtime on this bus directory, or a node still running); "
                               f"stop it, or use another bus.ipc_dir")
            try:
                path.unlink()      # a socket file left by a crashed predecessor (nobody answers on it)
            except FileNotFoundError:
                pass
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise BusError(f"node {src!r} cannot bind {endpoint}: {exc.strerror}; is another instance running?") from exc

    def send(self, body: M.Body, arrays: dict | None = None, derived=()) -> M.Stamp:
        """Publish a typed ``body`` (its class names the topic) with its ``arrays``; returns the stamp.

        Raises ValueError for a topic this node's kind may not publish or arrays that do not match the
        topic's schema — a bug in the publishing node, never something to put on the wire."""
        spec = M.TOPICS[body.TOPIC]
        if self.kind is not None and not spec.may_publish(self.kind):
            raise ValueError(f"a {self.kind} node may not publish {body.TOPIC!r} (publishers: "
                             f"{sorted(spec.publishers)})")
        want = body.ARRAYS
        arrays = arrays or {}
        if want is None:
            return self.publish(body.TOPIC, body.header(), arrays, derived)
        if arrays.keys() != want.keys():
            raise ValueError(f"{body.TOPIC!r} carries arrays {sorted(want)}, got {sorted(arrays)}")
        for name, a_spec in want.items():
            a = arrays[name]
            if not isinstance(a, np.ndarray) or a.dtype != np.dtype(a_spec.dtype):
                arrays = dict(arrays)
                arrays[name] = a = np.asarray(a, dtype=a_spec.dtype)
            try:
                a_spec.check(body.TOPIC, name, a)
            except MessageError as exc:
                raise ValueError(str(exc)) from None
        return self.publish(body.TOPIC, body.header(), arrays, derived)

    def publish(self, topic: str, header: dict | None = None, arrays: dict | None = None,
                derived=(), replayed: bool = False) -> M.Stamp:
        """Stamp ``header`` (v, seq, stamp_ns, src, derived) and send it on ``topic`` as it is; returns the
        stamp. Nodes use :meth:`send`; this raw path is for replaying recordings and for tests.

        ``derived``: the stamps (:class:`~kinebridge.runtime.bus.messages.Stamp`, received messages or
        stamp dicts) this message was computed from. Never blocks: at the high-water mark the message
        is dropped and counted."""
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        now = time.monotonic_ns()
        hdr = {"v": M.SCHEMA_VERSION, "seq": seq, "stamp_ns": now, "src": self.src}
        if header:
            for k in RESERVED:
                if k in header:
                    raise ValueError(f"header key {k!r} is stamped by the bus; do not set it")
            hdr.update(header)
        if derived:
            hdr["derived"] = [_stamp_wire(d) for d in derived]
        if replayed:
            hdr["replayed"] = True
        frames = encode(self.names.wire(topic) if topic in M.TOPICS else topic, hdr, arrays)
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1
        return M.Stamp(src=self.src, topic=topic, seq=seq, stamp_ns=now)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def _stamp_wire(d) -> dict:
    """A derived-from stamp as it travels: {src, topic, seq, stamp_ns}."""
    if isinstance(d, M.Stamp):
        return d.wire()
    if isinstance(d, Message):
        return d.stamp.wire()
    if isinstance(d, dict):
        return {"src": d["src"], "topic": d.get("topic", ""), "seq": d["seq"], "stamp_ns": d["stamp_ns"]}
    raise ValueError(f"derived: expected Stamp, Message or stamp dict, got {type(d).__name__}")


@dataclass
class SubscriberCounters:
    received: int = 0
    malformed: int = 0             # every message dropped, whatever the reason (see ``dropped``)
    gaps: int = 0                  # messages missing from a (src, topic) sequence (dropped upstream)
    last_error: str | None = None
    last_seq: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)   # reason → count: undecodable, unknown topic, schema, ...

    def drop(self, reason: str, error: str) -> None:
        self.malformed += 1
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.last_error = error


DEFAULT_MAX_MESSAGE_BYTES = 16 << 20   # bus.max_message_mb: the largest frame a subscriber accepts

# SCHED_FIFO priority of ZeroMQ's I/O thread in processes that send to the control loop (chunk
# producers, the supervisor's e-stop): far below the loop, above every normal process
PRODUCER_IO_PRIORITY = 10


def io_thread_fifo(ctx: zmq.Context, priority: int) -> str | None:
    """Ask for SCHED_FIFO ``priority`` for ``ctx``'s I/O thread (before its first socket): messages
    must not wait behind a busy planner for the CPU. libzmq aborts if the request is refused, so this
    only asks when the limit allows it (root or RLIMIT_RTPRIO); returns what it got, None for 0."""
    if priority <= 0:
        return None
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    if os.geteuid() != 0 and (soft != resource.RLIM_INFINITY and soft < priority):
        return f"normal scheduling (RLIMIT_RTPRIO {soft} < {priority})"
    ctx.set(zmq.THREAD_SCHED_POLICY, os.SCHED_FIFO)
    ctx.set(zmq.THREAD_PRIORITY, int(priority))
    return f"SCHED_FIFO {priority}"


class Subscriber:
    """A node's listening socket, connected to the publishers in ``endpoints``, for ``topics``.

    ``topics`` are exact names (``[]`` = everything, for the recorder). Malformed messages are
    counted in ``counters`` and skipped, never raised into a loop. ``servers`` maps endpoint →
    publishing node name, needed for CurveZMQ (the publisher's public key is looked up by name)."""

    def __init__(self, endpoints, topics=(), *, ctx: zmq.Context | None = None, rcvhwm: int = 1000,
                 curve: CurveKeys | None = None, servers: dict | None = None, name: str = "subscriber",
                 names: M.TopicNames | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.ctx = ctx or zmq.Context.instance()
        self.names = names or M.DEFAULT_NAMES
        for t in topics or ():
            M.spec_of(t)            # a typo in a topic name fails here, not by silence
        self.topics = frozenset(topics or ())
        self._nothing = topics is None
        self.sock = self.ctx.socket(zmq.SUB)
        _common(self.sock)
        self.sock.setsockopt(zmq.RCVHWM, int(rcvhwm))
        # a peer sending a larger message is disconnected by ZeroMQ before it is buffered (a size cap that
        # costs nothing per message; the registry's row caps bound each array further)
        self.sock.setsockopt(zmq.MAXMSGSIZE, int(max_message_bytes))
        if topics is None:
            pass                      # subscribed to nothing (yet): see subscribe()
        elif self.topics:
            for t in self.topics:
                self.sock.setsockopt(zmq.SUBSCRIBE, self.names.wire(t).encode())
        else:
            self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.counters = SubscriberCounters()
        # on_drop(topic, reason, message): called for a message of a known topic that failed its schema
        # (the control node answers a bad chunk with control/reject); it must not raise
        self.on_drop = None
        self._fd = None
        self.endpoints = []
        for ep in endpoints:
            self.connect(ep, curve=curve, server=(servers or {}).get(ep), name=name)

    def subscribe(self, topic: str) -> None:
        """Listen to ``topic`` from now on (messages published before are not delivered)."""
        M.spec_of(topic)
        if not self.topics and not self._nothing:
            return                  # already listening to everything
        self._nothing = False
        self.sock.setsockopt(zmq.SUBSCRIBE, self.names.wire(topic).encode())
        self.topics = self.topics | {topic}

    def connect(self, endpoint: str, *, curve: CurveKeys | None = None, server: str | None = None,
                name: str = "subscriber") -> None:
        check_endpoint(endpoint, f"{name} → {endpoint}")
        if curve is not None:
            if server is None:
                raise BusError(f"{name}: CurveZMQ needs the name of the node publishing on {endpoint} "
                               f"(its public key is <keys>/<name>.key)")
            pub, sec = curve.own()
            # libzmq copies the options at connect time, so each publisher is checked against its own key
            self.sock.curve_publickey, self.sock.curve_secretkey = pub, sec
            self.sock.curve_serverkey = curve.public(server)
        elif endpoint_is_remote(endpoint):
            raise BusError(f"{name} would listen to {endpoint} off this machine without CurveZMQ keys; "
                           f"set bus.curve_keys (see `kinebridge keys --help`)")
        self.sock.connect(endpoint)
        self.endpoints.append(endpoint)

    # -------------------------------------------------------------------------------- receiving
    def _accept(self, frames) -> Message | None:
        """Decode and validate one received message; None (counted by reason) for anything that fails.
        Nothing a peer sends can raise out of here."""
        return accept(frames, self.counters, self.names, self.topics, self.on_drop)


    def recv(self, timeout_ms: int | None = None) -> Message | None:
        """The next well-formed message, waiting up to ``timeout_ms`` (None = forever); None on timeout."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1e3
        while True:
            if deadline is not None:
                left = int(max(0.0, deadline - time.monotonic()) * 1e3)
                if not self.sock.poll(left):
                    return None
            msg = self._accept(self.sock.recv_multipart(copy=False))
            if msg is not None:
                return msg

    def wait_until(self, deadline_ns: int) -> bool:
        """Block until a message is queued or ``time.monotonic_ns()`` reaches ``deadline_ns``; True if one
        is queued. Microsecond timeouts (``zmq.poll`` rounds to whole milliseconds): the control node
        waits on the bus between ticks up to a fixed guard before the next deadline."""
        sock = self.sock
        fd = self._fd
        if fd is None:
            fd = self._fd = sock.getsockopt(zmq.FD)
        while True:
            # ZMQ_FD only says "look at ZMQ_EVENTS" (edge-triggered): check the events before every wait
            if sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return True
            rest = deadline_ns - time.monotonic_ns()
            if rest <= 0:
                return False
            select.select((fd,), (), (), rest * 1e-9)

    def drain(self, limit: int = 10_000) -> list[Message]:
        """Everything queued now, oldest first, without waiting."""
        out = []
        for _ in range(limit):
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            msg = self._accept(frames)
            if msg is not None:
                out.append(msg)
        return out

    def latest(self) -> dict[str, Message]:
        """Drain the queue and keep only the newest message of each topic (drain-to-latest)."""
        newest: dict[str, Message] = {}
        for m in self.drain():
            newest[m.topic] = m
        return newest

    def close(self) -> None:
        self.sock.close(linger=0)


def accept(frames, c: "SubscriberCounters", names: M.TopicNames, topics=frozenset(), on_drop=None) -> Message | None:
    """Decode and validate received ``frames``: the :class:`Message` with its typed body, or None —
    counted in ``c`` by reason — for anything that fails. Never raises for what a peer sends."""
    try:
        msg = decode(frames)
    except MessageError as exc:
        c.drop("undecodable", str(exc))
        return None
    except Exception as exc:    # a codec gap: still never fatal to the node
        c.drop("undecodable", f"{type(exc).__name__}: {exc}")
        return None
    logical = names.logical(msg.topic)
    if logical is None:
        if topics:
            return None        # a longer wire name sharing a subscribed prefix
        c.drop("unknown topic", f"unknown topic {msg.topic!r}")
        return None
    if topics and logical not in topics:
        return None            # a longer topic that shares a subscribed prefix
    msg.topic = logical
    try:
        M.validate(msg)
    except MessageError as exc:
        text = str(exc)
        c.drop("schema version" if "schema version" in text else "invalid", text)
        if on_drop is not None:
            try:
                on_drop(logical, text, msg)
            except Exception:   # a reporting hook never takes the receive path down
                pass
        return None
    except Exception as exc:   # pragma: no cover - validate raises MessageError only
        c.drop("invalid", f"{type(exc).__name__}: {exc}")
        return None
    st = msg.stamp
    key = (st.src, logical)
    prev = c.last_seq.get(key)
    if prev is not None and st.seq > prev + 1:
        c.gaps += st.seq - prev - 1
    if len(c.last_seq) < 4096 or key in c.last_seq:
        c.last_seq[key] = st.seq
    c.received += 1
    return msg
