"""The arm interface every kinebridge controller talks to, and the errors it raises.

``ArmDriver`` is the hardware side of the ros2_control-style split: it knows how to reach one arm
(connect, read state, stream a setpoint, stop, close) and nothing about trajectories. The control
node (``runtime``) is written against this interface only, so the RealMan driver on the official
SDK and any other implementation swap by configuration.

Units are SI throughout: joint angles in radians, positions in metres, orientation as a unit
quaternion ``(w, x, y, z)``. Drivers convert to the wire units of their arm at the boundary.

Every setpoint is validated *before* it reaches the arm (finite, right length, inside the joint
limits, a step the joints can make); a rejected setpoint raises :class:`SetpointRejected` and
nothing is sent.
"""

from __future__ import annotations

import abc
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
from numba import njit

from kinebridge.drivers.arm.limits import JointLimits

if TYPE_CHECKING:
    from kinebridge.drivers.arm.model import ArmModel

__all__ = [
    "ArmDriver", "ArmState", "JointLimits", "StateCallback",
    "ArmError", "ArmConnectionError", "LinkLost", "ControllerError", "ControllerTimeout", "SDKError",
    "SetpointRejected", "validate_joint_setpoint",
]


# ------------------------------------------------------------------------------------------- errors
class ArmError(RuntimeError):
    """Base class of every error an arm driver raises about the arm or the link to it."""


class ArmConnectionError(ArmError):
    """Connecting failed: nothing listening, a handshake reply missing, or the wrong arm model."""


class LinkLost(ArmError):
    """The link to the controller is gone (no state push for too long, or a send failed).

    Streaming stops until :meth:`ArmDriver.reconnect` succeeds."""


class ControllerTimeout(ArmError):
    """The controller did not answer a request in time (SDK code -2)."""


class ControllerError(ArmError):
    """The controller reported an error; ``codes`` are its system error codes with their meaning."""

    def __init__(self, message: str, codes: tuple[int, ...] = ()):
        super().__init__(message)
        self.codes = tuple(codes)


class SDKError(ArmError):
    """An SDK call returned a non-zero code that is not one of the more specific errors above."""

    def __init__(self, call: str, code: int, meaning: str):
        super().__init__(f"{call} returned {code}: {meaning}")
        self.call, self.code, self.meaning = call, code, meaning


class SetpointRejected(ValueError):
    """A setpoint failed validation before it reached the arm (nothing was sent)."""


# ------------------------------------------------------------------------------------ state / limits
@dataclass(frozen=True)
class ArmState:
    """One state sample of the arm, as the controller pushed it.

    ``stamp_ns`` is CLOCK_MONOTONIC (``time.monotonic_ns()``) at reception, comparable across
    processes on one machine. ``errors`` holds the controller's non-zero system error codes;
    ``status`` is the controller's motion state name (``idle``, ``move_J``, ``move_through_joint``…).
    """

    seq: int
    stamp_ns: int
    q: np.ndarray
    qd: np.ndarray
    position: np.ndarray
    quaternion: np.ndarray
    errors: tuple[int, ...] = ()
    status: str = "idle"
    extra: dict = field(default_factory=dict)


StateCallback = Callable[[ArmState], None]


@njit(cache=True)
def _setpoint_fault(a, q_min, q_max, qd_max, prev, elapsed_s, max_step, tolerance):
    """(code, joint) of the first failed check, code 0 when the setpoint is fine.

    1 non-finite, 2 outside [q_min, q_max], 3 step > max_step, 4 faster than qd_max(1+tolerance)."""
    n = a.shape[0]
    for j in range(n):
        if not np.isfinite(a[j]):
            return 1, j
    for j in range(n):
        if a[j] < q_min[j] or a[j] > q_max[j]:
            return 2, j
    if prev.shape[0] == n:
        worst, jw = 0.0, -1
        for j in range(n):
            step = abs(a[j] - prev[j])
            if max_step > 0.0 and step > max_step:
                return 3, j
            if elapsed_s > 0.0:
                r = step / (qd_max[j] * elapsed_s * (1.0 + tolerance))
                if r > 1.0 and r > worst:
                    worst, jw = r, j
        if jw >= 0:
            return 4, jw
    return 0, -1


_NO_PREV = np.empty(0)


def validate_joint_setpoint(q, limits: JointLimits, previous: np.ndarray | None = None,
                            elapsed_s: float | None = None, *, max_step: float | None = None,
                            tolerance: float = 0.10) -> np.ndarray:
    """Check a joint setpoint and return it as a float64 array, or raise :class:`SetpointRejected`.

    Rejects: wrong length, non-finite values, a joint outside ``[q_min, q_max]``, and — when the
    previous setpoint and the time since it are given — a step faster than ``qd_max`` (with
    ``tolerance`` slack for timing jitter) or larger than ``max_step`` rad in one frame. The checks
    run compiled (about a microsecond); the message is only built for a rejected setpoint.
    """
    try:
        a = np.asarray(q, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SetpointRejected(f"joint setpoint must be {limits.dof} numbers (rad), got {q!r}") from exc
    if a.shape != (limits.dof,):
        raise SetpointRejected(f"joint setpoint must have shape ({limits.dof},), got {a.shape}")
    prev = _NO_PREV if previous is None else previous
    code, j = _setpoint_fault(a, limits.q_min, limits.q_max, limits.qd_max, prev,
                              -1.0 if elapsed_s is None else float(elapsed_s),
                              -1.0 if max_step is None else float(max_step), float(tolerance))
    if code == 0:
        return a
    if code == 1:
        bad = np.flatnonzero(~np.isfinite(a)) + 1
        raise SetpointRejected(f"joint setpoint has non-finite values at joints {bad}: {a}")
    if code == 2:
        raise SetpointRejected(
            f"joint {j + 1} setpoint {np.degrees(a[j]):.3f}° is outside its limits "
            f"[{np.degrees(limits.q_min[j]):.1f}°, {np.degrees(limits.q_max[j]):.1f}°]; clamp or re-plan the target")
    step = abs(a[j] - prev[j])
    if code == 3:
        raise SetpointRejected(
            f"joint {j + 1} steps {np.degrees(step):.3f}° in one frame, more than the "
            f"{np.degrees(max_step):.1f}° the controller accepts; send intermediate setpoints")
    raise SetpointRejected(
        f"joint {j + 1} would move at {np.degrees(step / elapsed_s):.1f}°/s, above its "
        f"{np.degrees(limits.qd_max[j]):.0f}°/s limit; slow the trajectory down")


# -------------------------------------------------------------------------------------- interface
class ArmDriver(abc.ABC):
    """One arm. Implementations: :class:`kinebridge.drivers.realman.arm.RealmanArm`.

    Thread safety: ``send_joint_setpoint`` is meant to be called from one control thread; state
    callbacks run on the driver's receive thread and must only copy data out.
    """

    dof: int
    limits: JointLimits      # what every setpoint is checked against: ``model.limits`` once connected
    model: "ArmModel"        # the arm's facts (kinematics, limits ∩ the controller's report)

    def __init__(self) -> None:
        self._callbacks: list[StateCallback] = []
        self._cb_lock = threading.Lock()

    # connection -----------------------------------------------------------------------------
    @abc.abstractmethod
    def connect(self) -> None:
        """Open the link, read the arm's configuration and start receiving state."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop streaming and release the link. Safe to call twice."""

    @abc.abstractmethod
    def reconnect(self, timeout_s: float = 5.0) -> None:
        """Drop whatever is left of the link and connect again."""

    @property
    @abc.abstractmethod
    def link_alive(self) -> bool:
        """True while state arrives on time."""

    # state -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def read_state(self) -> ArmState:
        """The newest state sample; raises :class:`LinkLost` if it is stale."""

    def wait_for_state(self, timeout_s: float = 1.0, newer_than_seq: int = -1) -> ArmState:
        """Block until a state sample newer than ``newer_than_seq`` arrives."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                st = self.read_state()
                if st.seq > newer_than_seq:
                    return st
            except LinkLost:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise LinkLost(f"no state from the arm within {timeout_s:.2f} s")
            time.sleep(0.0005)

    def add_state_callback(self, callback: StateCallback) -> None:
        """Call ``callback(state)`` for every state sample (on the driver's receive thread)."""
        with self._cb_lock:
            self._callbacks.append(callback)

    def remove_state_callback(self, callback: StateCallback) -> None:
        with self._cb_lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def _emit(self, state: ArmState) -> None:
        for cb in tuple(self._callbacks):
            try:
                cb(state)
            except Exception:  # a user callback must never kill the receive thread
                pass

    # motion ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def send_joint_setpoint(self, q) -> None:
        """Stream one joint setpoint (rad). Validated first; raises :class:`SetpointRejected`."""

    @abc.abstractmethod
    def send_cartesian_setpoint(self, position, quaternion) -> None:
        """Stream one flange pose (m, unit quaternion w,x,y,z) for the controller's IK."""

    @abc.abstractmethod
    def move_joints(self, q, speed_percent: int = 20, timeout_s: float = 30.0) -> None:
        """A planned joint move, blocking until the controller reports arrival."""

    @abc.abstractmethod
    def stop(self) -> bool:
        """Stop the arm now, from any state. Never raises; returns whether the controller confirmed."""

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()
        return False
