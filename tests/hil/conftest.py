"""Hardware-in-the-loop fixtures: the simulated RealMan controller by default, a real arm on request.

    KINEBRIDGE_ARM=<ip>            run against the real controller at <ip> (read the safety
                                   checklist in the README first)
    KINEBRIDGE_ARM_PORT=8080       its JSON/TCP port
    KINEBRIDGE_ARM_UDP_PORT=8089   the local UDP port it pushes state to
    KINEBRIDGE_HIL_SPEED=0.1       fraction of the joint speed/acceleration limits the suite may use
                                   on a real arm (the simulator always runs at full limits)
    KINEBRIDGE_HIL_THREAD_PRIORITY=70
                                   SCHED_FIFO priority of the driver's link threads (the SDK's receive
                                   and UDP threads, the watchdog) where permitted, as the control node
                                   runs them; 0 leaves them at normal priority (on a loaded box a
                                   normal-priority test process then misses pushes for 0.1–0.5 s)

Without ``KINEBRIDGE_ARM`` every test starts ``kinebridge sim`` as a separate process on free ports
and drives it through the same driver and the same official SDK a user runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from kinebridge.drivers.arm.model import arm_model
from kinebridge.drivers.host.net import free_udp_port
from kinebridge.drivers.realman.arm import RealmanArm, RealmanConfig

REAL_ARM = os.environ.get("KINEBRIDGE_ARM")
THREAD_PRIORITY = int(os.environ.get("KINEBRIDGE_HIL_THREAD_PRIORITY", "70"))
ARM_MODEL = os.environ.get("KINEBRIDGE_ARM_MODEL", "RM75-B")


@dataclass
class Target:
    ip: str
    port: int
    udp_port: int
    sim: object | None  # the SimProcess, or None on a real arm
    speed_fraction: float

    @property
    def real(self) -> bool:
        return self.sim is None

    def config(self, **overrides) -> RealmanConfig:
        base = dict(ip=self.ip, port=self.port, udp_port=self.udp_port, thread_priority=THREAD_PRIORITY)
        base.update(overrides)
        return RealmanConfig(**base)

    def driver(self, **overrides) -> RealmanArm:
        """A driver for the target arm (``KINEBRIDGE_ARM_MODEL``, default RM75-B) at the suite's speed."""
        return RealmanArm(self.config(**overrides), arm_model(ARM_MODEL, self.speed_fraction))


@pytest.fixture(scope="module")
def target():
    if REAL_ARM:
        yield Target(REAL_ARM, int(os.environ.get("KINEBRIDGE_ARM_PORT", "8080")),
                     int(os.environ.get("KINEBRIDGE_ARM_UDP_PORT", "8089")), None,
                     float(os.environ.get("KINEBRIDGE_HIL_SPEED", "0.1")))
        return
    from kinebridge.drivers.realman.sim.controller import spawn_sim

    udp = free_udp_port()
    with spawn_sim(port=0, push_port=udp) as sim:
        yield Target("127.0.0.1", sim.port, udp, sim, 1.0)


@pytest.fixture
def arm(target):
    drv = target.driver()
    drv.connect()
    if drv.read_state().errors:
        drv.clear_errors()
    try:
        yield drv
    finally:
        drv.close()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/hil" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.hil)
