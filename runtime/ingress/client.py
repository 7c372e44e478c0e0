"""Publishing into a running kinebridge from outside: a PUSH socket to the ingress.

::

    from kinebridge.runtime.ingress.client import IngressProducer
    from kinebridge.runtime.bus import messages as M

    with IngressProducer.to_runtime() as p:          # the runtime on the default bus directory
        p.send(M.Task(skill="pour", params={"cup": [0.45, 0.18, 0.08, 20]}, task_id="t1"))

Messages are stamped and typed exactly as a node's (:class:`~kinebridge.runtime.bus.sockets.Publisher`),
so the ingress validates them the same way. Chunks carry times on the robot PC's CLOCK_MONOTONIC: a
producer on another machine estimates that clock from ``control/state`` stamps
(:class:`~kinebridge.runtime.trajectory.clock_sync.ControlClock`).
"""

from __future__ import annotations

import zmq

from kinebridge.runtime.bus.sockets import BusError, CurveKeys, Publisher, check_endpoint, endpoint_is_remote

__all__ = ["IngressProducer", "runtime_info"]


def runtime_info(ipc_dir: str | None = None) -> dict:
    """What the runtime on ``ipc_dir`` (default: the default bus directory) says about itself; a
    clear error if none runs there."""
    from kinebridge.runtime.bus.sockets import default_ipc_dir
    from kinebridge.runtime.daemon.lock import read_runtime_info
    d = ipc_dir or default_ipc_dir()
    info = read_runtime_info(d)
    if not info:
        raise BusError(f"no kinebridge runtime is running on the bus directory {d} (start one with "
                       f"`kinebridge run --serve`, or name its directory with --ipc-dir / --config)")
    return info


class IngressProducer(Publisher):
    """A producer outside the runtime: ``send(body, arrays)`` reaches the ingress node."""

    def __init__(self, endpoint: str, src: str = "client", *, ctx: zmq.Context | None = None, sndhwm: int = 1000,
                 curve: CurveKeys | None = None, server: str = "ingress"):
        self._server = server
        super().__init__(endpoint, src, ctx=ctx, sndhwm=sndhwm, curve=curve)

    @classmethod
    def to_runtime(cls, ipc_dir: str | None = None, src: str = "client", **kw) -> "IngressProducer":
        return cls(runtime_info(ipc_dir)["ingress"], src, **kw)

    def _open(self, endpoint: str, curve: CurveKeys | None, sndhwm: int) -> None:
        check_endpoint(endpoint, "ingress endpoint")
        if endpoint_is_remote(endpoint) and curve is None:
            raise BusError(f"the ingress at {endpoint} is on another machine: give CurveZMQ keys "
                           f"(`kinebridge keys`; the runtime lists this client under [ingress.clients])")
        self.sock = self.ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 500)       # a task sent just before exit still leaves
        self.sock.setsockopt(zmq.IMMEDIATE, 1)      # nothing queues for a connection that is not up
        self.sock.setsockopt(zmq.SNDHWM, int(sndhwm))
        if curve is not None:
            pub, sec = curve.own()
            self.sock.curve_publickey, self.sock.curve_secretkey = pub, sec
            self.sock.curve_serverkey = curve.public(self._server)
        self.sock.connect(endpoint)

    def __enter__(self) -> "IngressProducer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_connected(self, timeout_s: float = 2.0) -> bool:
        """True once the connection to the ingress is up (a send would not be dropped)."""
        return bool(self.sock.poll(int(timeout_s * 1e3), zmq.POLLOUT))
