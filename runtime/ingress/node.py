"""The ingress node: the one documented way in for producers that are not configured nodes.

Outside producers — ``kinebridge task``, a user's script, a VLA server on a GPU box — PUSH messages to
the ingress endpoint (``[ingress] endpoint``, default ``ipc://<bus.ipc_dir>/ingress-in.sock``); the node
PULLs them, and for each:

1. decodes and validates it against the message registry (:func:`~kinebridge.runtime.bus.sockets.accept`),
   exactly as every node validates what it hears;
2. checks the producer's rights: a local (ipc) producer may publish ``[ingress] local_topics``; a remote
   one connects over tcp with CurveZMQ, is identified by its public key (``<bus.curve_keys>/<name>.key``)
   and may publish the topics of ``[ingress.clients.<name>]``;
3. keeps the rate within ``max_rate_hz`` (a flood is dropped and counted, never passed on);
4. re-publishes it on the bus from the node ``ingress`` (a publisher of ``task``, ``chunk``, ``estop``,
   ``policy/tokens`` in the registry) with the producer's own stamp in ``derived``, so every consumer can
   trace it to its source.

Everything dropped is counted by reason in the heartbeat. Nothing a producer sends can crash the node.
"""

from __future__ import annotations

import time

import zmq

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.sockets import BusError, SubscriberCounters, accept, check_endpoint, endpoint_is_remote
from kinebridge.runtime.node import Node

__all__ = ["IngressNode"]


class IngressNode(Node):
    def subscriptions(self):
        return None                       # it listens to producers, not to the bus

    def setup(self) -> None:
        cfg = self.cfg
        ep = cfg.ingress_endpoint()
        check_endpoint(ep, "ingress.endpoint")
        self.remote = endpoint_is_remote(ep)
        self.counters = SubscriberCounters()
        self.names = cfg.bus.names()
        self.local_topics = frozenset(cfg.ingress.local_topics)
        self.rights: dict[bytes, tuple[str, frozenset]] = {}     # client public key → (name, topics)
        self.pull = self.ctx.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.RCVHWM, cfg.bus.rcvhwm)
        self.pull.setsockopt(zmq.MAXMSGSIZE, int(cfg.bus.max_message_mb * (1 << 20)))
        self._auth = None
        if ep.startswith("tcp://") and cfg.bus.curve_keys:
            self._curve_server(cfg)
        elif self.remote:
            raise BusError(f"ingress.endpoint {ep} is reachable from other machines: set bus.curve_keys")
        if ep.startswith("ipc://"):
            from pathlib import Path
            from kinebridge.runtime.bus.sockets import ipc_in_use
            path = Path(ep[len("ipc://"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            if ipc_in_use(path):
                raise BusError(f"another process serves the ingress at {ep}; is another runtime running?")
            path.unlink(missing_ok=True)
        self.pull.bind(ep)
        self.endpoint = ep
        self.detail["endpoint"] = ep
        self.forwarded = 0
        self._rate = cfg.ingress.max_rate_hz
        self._tokens = self._rate              # a token bucket: a second's worth of burst, then the rate
        self._last_refill = time.monotonic()

    def _curve_server(self, cfg) -> None:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator
        from kinebridge.runtime.bus.sockets import CurveKeys
        keys = CurveKeys(cfg.bus.curve_keys, self.name)
        for client, spec in cfg.ingress.clients.items():
            self.rights[keys.public(client)] = (client, frozenset(spec.topics))
        self._auth = ThreadAuthenticator(self.ctx)
        self._auth.start()
        allowed = set(self.rights)

        class _Keys:                           # only the configured clients' keys get in
            def callback(self, domain, key):
                return key in allowed

        self._auth.configure_curve_callback(domain="*", credentials_provider=_Keys())
        pub, sec = keys.own()
        self.pull.curve_publickey, self.pull.curve_secretkey = pub, sec
        self.pull.curve_server = True

    def teardown(self) -> None:
        pull = getattr(self, "pull", None)
        if pull is not None:
            pull.close(linger=0)
        if getattr(self, "_auth", None) is not None:
            self._auth.stop()

    # ------------------------------------------------------------------------------------ loop
    def loop(self) -> None:
        self.status = "ready"
        period = 1.0 / self.cfg.supervisor.heartbeat_hz
        while not self.stopping:
            if self.pull.poll(int(period * 1e3)):
                for _ in range(256):
                    try:
                        frames = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._take(frames)
            self.detail.update(forwarded=self.forwarded, ingress_dropped=dict(self.counters.dropped))
            self.heartbeat()

    def _allowed(self, frames, topic: str) -> tuple[bool, str]:
        if not self.rights:                  # ipc (or tcp on loopback without keys): the local rights
            return topic in self.local_topics, "local"
        key = None
        try:
            user = frames[0].get("User-Id")  # the z85 public key ZAP authenticated
            import zmq.utils.z85 as z85
            key = z85.decode(user) if user else None
        except Exception:
            key = None
        name, topics = self.rights.get(key, ("?", frozenset()))
        return topic in topics, name

    def _take(self, frames) -> None:
        c = self.counters
        msg = accept(frames, c, self.names)
        if msg is None:
            return
        ok, client = self._allowed(frames, msg.topic)
        if not ok:
            c.drop("unauthorised", f"{client!r} may not publish {msg.topic!r}")
            return
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._last_refill) * self._rate)
        self._last_refill = now
        if self._tokens < 1.0:
            c.drop("rate", f"more than {self._rate:g} messages/s from outside")
            return
        self._tokens -= 1.0
        orig = msg.stamp
        src = orig.src if client == "local" else f"{client}/{orig.src}"
        stamp = M.Stamp(src=src[:100], topic=orig.topic, seq=orig.seq, stamp_ns=orig.stamp_ns)
        self.pub.publish(msg.topic, msg.body.header(), msg.arrays, derived=[stamp, *msg.derived[:15]])
        self.forwarded += 1
