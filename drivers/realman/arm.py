"""``RealmanArm``: the RealMan RM75 through RealMan's official Python SDK (``robotic-arm``).

What this adds on top of the SDK (see ``../shared/reference/realman-protocol.md`` §2):

* **Streaming** with ``rm_movej_canfd`` (joint pass-through) and ``rm_movep_canfd`` (Cartesian),
  every setpoint validated first (finite, 7 values, inside the joint limits the controller reports,
  no step faster than the joint speed limit or larger than 10° per frame) — a bad one raises
  :class:`~kinebridge.drivers.arm.driver.SetpointRejected` and never reaches the SDK.
* **State from the UDP push**, not TCP polling: the SDK's (process-global) UDP callback is
  dispatched to the driver of the arm that sent it; :meth:`RealmanArm.read_state` returns the
  newest sample without any I/O.
* **Dead-link detection**: a watchdog declares the link lost when no push arrived for
  ``link_timeout_periods`` push periods (2 by default), blocks streaming, tries to stop the arm
  and tells the registered loss callbacks. ``reconnect()`` rebuilds the connection (the SDK has no
  reconnect of its own).
* **Errors**: SDK return codes become exceptions (``-1`` → :class:`LinkLost`, ``-2`` →
  :class:`ControllerTimeout`, ``1`` → :class:`ControllerError` with the controller's error codes
  and their meaning, …); controller error codes in the push surface on the next send.
* **Stop from any state**: :meth:`stop` sends the controller's quick stop and never raises.

The SDK keeps process-global state (thread mode, UDP port, callbacks); this module initialises it
once per process in triple-thread mode and keeps the ctypes callbacks referenced.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
import weakref
from typing import Callable

import numpy as np

from kinebridge.drivers.arm.driver import (
    ArmConnectionError, ArmDriver, ArmError, ArmState, ControllerError, ControllerTimeout, JointLimits,
    LinkLost, SDKError, SetpointRejected, validate_joint_setpoint,
)
from kinebridge.drivers.arm.model import ArmModel, arm_model
from kinebridge.drivers.realman.config import RealmanConfig
from kinebridge.drivers.realman.protocol import ARM_STATUS_NAMES
from kinebridge.kernels import rm75

__all__ = ["RealmanConfig", "RealmanArm", "SDK_RETURN_CODES", "error_text"]

# SDK return codes (realman-protocol.md §1.9) and what they mean for a kinebridge user.
SDK_RETURN_CODES = {
    0: "success",
    1: "the controller refused the request (parameter error or the arm is in an error state)",
    -1: "sending failed: the TCP link to the controller is down",
    -2: "no reply from the controller before the timeout",
    -3: "the controller's reply could not be parsed (firmware and SDK 1.1.6 disagree on its format)",
    -4: "invalid parameter, arrival-device mismatch, or not supported on a Gen-3 controller",
    -5: "blocking call timed out",
    -6: "the planned move was stopped externally",
    -7: "this controller generation does not support the call",
}

def error_text(codes) -> str:
    """``"0x1007 joint overspeed…; …"`` for controller system error codes."""
    from kinebridge.drivers.realman.protocol import error_meaning

    return "; ".join(f"0x{c:04X} {error_meaning(c)}" for c in codes)


# ------------------------------------------------------------------ process-global SDK plumbing
_SDK_LOCK = threading.Lock()
_SDK = {"ready": False, "udp_cb": None, "event_cb": None}
_BY_IP: dict[str, "weakref.WeakSet[RealmanArm]"] = {}
_BY_HANDLE: "weakref.WeakValueDictionary[int, RealmanArm]" = weakref.WeakValueDictionary()


def _sdk():
    """Import the SDK (a clear error if it is missing) and initialise it once, triple-thread mode."""
    try:
        from Robotic_Arm import rm_robot_interface as rm
    except ImportError as exc:  # pragma: no cover - robotic-arm is a core dependency
        raise ArmError("RealMan's SDK is not installed: pip install robotic-arm==1.1.6") from exc
    with _SDK_LOCK:
        if not _SDK["ready"]:
            with contextlib.redirect_stdout(io.StringIO()):  # the SDK prints its version on init
                rm.RoboticArm(rm.rm_thread_mode_e.RM_TRIPLE_MODE_E)
            _SDK["udp_cb"] = rm.rm_realtime_arm_state_callback_ptr(_on_udp)
            _SDK["event_cb"] = rm.rm_event_callback_ptr(_on_event)
            rm.RoboticArm().rm_realtime_arm_state_call_back(_SDK["udp_cb"])
            rm.RoboticArm().rm_get_arm_event_call_back(_SDK["event_cb"])
            _SDK["ready"] = True
    return rm


def _on_udp(data) -> None:  # runs on the SDK's UDP thread
    try:
        ip = data.arm_ip.decode(errors="replace")
        arms = _BY_IP.get(ip)
        if arms:
            for arm in tuple(arms):
                arm._on_push(data)
    except Exception:
        pass


def _on_event(data) -> None:  # runs on the SDK's TCP receive thread
    try:
        arm = _BY_HANDLE.get(int(data.handle_id))
        if arm is not None:
            arm._on_event(int(data.event_type), bool(data.trajectory_state), int(data.device))
    except Exception:
        pass


def _route_ip(peer: str, port: int) -> str:
    """The local address the OS would use to reach ``peer`` (where the controller must push)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((peer, port))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


# --------------------------------------------------------------------------------------- driver
class RealmanArm(ArmDriver):
    """A RealMan RM75 on its controller's JSON/TCP port, through the official SDK."""

    dof = 7

    def __init__(self, config: RealmanConfig | None = None, model: ArmModel | None = None, **overrides):
        super().__init__()
        self.config = (config or RealmanConfig()).model_copy(update=overrides) if overrides else (
            config or RealmanConfig())
        RealmanConfig.model_validate(self.config.model_dump())  # overrides are validated too
        self._arm = None
        self._handle_id = -1
        self.info: dict = {}
        self.model: ArmModel = model or arm_model("RM75-B")   # the configured arm; limits ∩ controller's at connect
        self.limits: JointLimits | None = None
        self._lock = threading.Lock()
        self._latest: ArmState | None = None
        self._seq = 0
        self._last_push_ns = 0
        self._lost_reason: str | None = None
        self._loss_callbacks: list[Callable[[str], None]] = []
        self._watchdog: threading.Thread | None = None
        self._stop_watchdog = threading.Event()
        self._prev_q: np.ndarray | None = None
        self._prev_ns = 0
        self._period_avg = 0.0
        self._event = threading.Event()
        self._event_result: tuple[bool, int] | None = None
        self.sent = 0

    @classmethod
    def from_config(cls, arm_cfg, model: ArmModel, **overrides) -> "RealmanArm":
        """The driver for ``[arm]`` (``arm_cfg.realman``: address and streaming) and its model."""
        return cls(arm_cfg.realman, model, **overrides)

    # ------------------------------------------------------------------------------ connection
    def connect(self) -> None:
        if self._arm is not None:
            return
        rm = _sdk()
        cfg = self.config
        arm = rm.RoboticArm()
        arm.rm_set_timeout(cfg.timeout_ms)
        handle = arm.rm_create_robot_arm(cfg.ip, cfg.port, level=3)
        if handle.id == -1:
            with contextlib.suppress(Exception):
                arm.rm_delete_robot_arm()  # the SDK leaves a failed connect's socket open
            raise ArmConnectionError(
                f"could not connect to the RealMan controller at {cfg.ip}:{cfg.port}: nothing listening or a "
                f"handshake reply missing. Check the address and that no other program holds the arm; "
                f"for the simulator run `kinebridge sim --port {cfg.port}`")
        ret, info = arm.rm_get_robot_info()
        if ret != 0 or info.get("arm_dof") != 7 or "75" not in str(info.get("arm_model", "")):
            arm.rm_delete_robot_arm()
            raise ArmConnectionError(f"the arm at {cfg.ip}:{cfg.port} is not a 7-DoF RM75 (robot info {info})")
        variant = "RM75-6F" if "6F" in str(info.get("force_type", "")) else "RM75-B"
        if variant != self.model.name:
            arm.rm_delete_robot_arm()
            raise ArmConnectionError(f"the arm at {cfg.ip}:{cfg.port} is an {variant} (robot info {info}), the "
                                     f"configuration says {self.model.name}: set [arm] model = \"{variant}\"")
        self._arm, self._handle_id, self.info = arm, int(handle.id), dict(info)
        try:
            self.limits = self._read_limits()
            host_ip = cfg.host_ip or _route_ip(cfg.ip, cfg.port)
            push = rm.rm_realtime_push_config_t(
                cfg.push_cycle, True, cfg.udp_port, -1, host_ip,
                rm.rm_udp_custom_config_t(joint_speed=1, arm_current_status=1))
            self._check("rm_set_realtime_push", arm.rm_set_realtime_push(push))
            _BY_IP.setdefault(cfg.ip, weakref.WeakSet()).add(self)
            _BY_HANDLE[self._handle_id] = self
            with self._lock:
                self._lost_reason = None
                self._last_push_ns = 0
            try:
                self.wait_for_state(cfg.connect_timeout_s, newer_than_seq=self._seq)
            except LinkLost:
                raise ArmConnectionError(
                    f"connected to {cfg.ip}:{cfg.port} but no UDP state push reached {host_ip}:{cfg.udp_port} within "
                    f"{cfg.connect_timeout_s:.1f} s; check host_ip, the firewall, and that no other process "
                    f"uses UDP port {cfg.udp_port}") from None
        except BaseException:
            self._teardown()
            raise
        self._prev_q, self._period_avg = None, 0.0
        # compile / load the setpoint check now, not on the first streamed setpoint (a cold load
        # holds the GIL long enough to starve the state callback)
        validate_joint_setpoint(self._latest.q, self.limits, self._latest.q, 0.01, max_step=0.1)
        self._stop_watchdog.clear()
        self._watchdog = threading.Thread(target=self._watch, name="realman-link-watchdog", daemon=True)
        self._watchdog.start()

    def _read_limits(self) -> JointLimits:
        arm = self._arm
        vals = []
        for call in ("rm_get_joint_min_pos", "rm_get_joint_max_pos", "rm_get_joint_max_speed",
                     "rm_get_joint_max_acc"):
            ret, v = getattr(arm, call)()
            self._check(call, ret)
            vals.append(np.radians(np.asarray(v[:7], dtype=np.float64)))
        q_min, q_max, qd, qdd = vals
        self.model = self.model.with_reported(JointLimits(q_min, q_max, qd, qdd))   # ∩ the model's, speed-scaled
        return self.model.limits

    def close(self, stop: bool = True) -> None:
        if self._arm is None:
            return
        if stop and self.link_alive:
            with contextlib.suppress(Exception):
                self._arm.rm_set_arm_slow_stop()
        self._teardown()

    def _teardown(self) -> None:
        self._stop_watchdog.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=1.0)
        self._watchdog = None
        arms = _BY_IP.get(self.config.ip)
        if arms is not None:
            arms.discard(self)
        _BY_HANDLE.pop(self._handle_id, None)
        if self._arm is not None:
            with contextlib.suppress(Exception):
                self._arm.rm_delete_robot_arm()
        self._arm, self._handle_id = None, -1

    def reconnect(self, timeout_s: float = 5.0) -> None:
        """Drop the old handle and connect again, retrying until ``timeout_s``."""
        self._teardown()
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.connect()
                return
            except ArmConnectionError as exc:
                last = exc
                time.sleep(0.1)
        raise ArmConnectionError(f"reconnect to {self.config.ip}:{self.config.port} failed for "
                                 f"{timeout_s:.1f} s: {last}")

    @property
    def connected(self) -> bool:
        return self._arm is not None

    @property
    def link_alive(self) -> bool:
        return self._arm is not None and self._lost_reason is None and self._latest is not None

    def on_link_lost(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` (on the watchdog thread) when the link is declared lost."""
        self._loss_callbacks.append(callback)

    @property
    def lost_reason(self) -> str | None:
        return self._lost_reason

    # -------------------------------------------------------------------------------- state
    def _on_push(self, d) -> None:
        now = time.monotonic_ns()
        if d.errCode != 0:
            return
        js = d.joint_status
        q = np.radians(np.frombuffer(js.joint_position, dtype=np.float32, count=7).astype(np.float64))
        qd = np.radians(np.frombuffer(js.joint_speed, dtype=np.float32, count=7).astype(np.float64))
        wp = d.waypoint
        pos = np.array([wp.position.x, wp.position.y, wp.position.z], dtype=np.float64)
        quat = np.array([wp.quaternion.w, wp.quaternion.x, wp.quaternion.y, wp.quaternion.z], dtype=np.float64)
        n = min(int(d.err.err_len), 24)
        errors = tuple(int(c) for c in d.err.err[:n] if c != 0)
        s = int(d.arm_current_status)
        status = ARM_STATUS_NAMES[s] if 0 <= s < len(ARM_STATUS_NAMES) else f"status_{s}"
        with self._lock:
            self._seq += 1
            st = ArmState(self._seq, now, q, qd, pos, quat, errors, status)
            self._latest = st
            self._last_push_ns = now
        self._emit(st)

    def read_state(self) -> ArmState:
        st = self._latest
        if self._arm is None:
            raise ArmError("the arm is not connected; call connect()")
        if self._lost_reason is not None:
            raise LinkLost(self._lost_reason)
        if st is None:
            raise LinkLost(f"no state push from {self.config.ip} yet")
        return st

    def _watch(self) -> None:
        """Declare the link lost after ``link_timeout_periods`` push periods without state.

        The clock only runs while this process runs: when the watchdog itself wakes up late (the
        process was stalled — GIL held by a JIT compile, swapped out, suspended), a missing push is
        no evidence against the link, so the silence is measured from the end of the stall."""
        period = self.config.push_period_s
        timeout_ns = self.config.link_timeout_periods * period * 1e9
        check = max(period / 5.0, 0.0005)
        stall_ns = max(4 * check * 1e9, 0.5 * timeout_ns)
        prev = time.monotonic_ns()
        resumed = prev
        while not self._stop_watchdog.wait(check):
            now = time.monotonic_ns()
            if now - prev > check * 1e9 + stall_ns:
                resumed = now
            prev = now
            last = max(self._last_push_ns, resumed)
            if self._last_push_ns and self._lost_reason is None and now - last > timeout_ns:
                gap_ms = (now - self._last_push_ns) / 1e6
                self._declare_lost(f"no state push from {self.config.ip} for {gap_ms:.1f} ms "
                                   f"({self.config.link_timeout_periods:g} push periods = "
                                   f"{timeout_ns / 1e6:.1f} ms); streaming stopped, call reconnect()")

    def _declare_lost(self, reason: str) -> None:
        with self._lock:
            if self._lost_reason is not None:
                return
            self._lost_reason = reason
            self.lost_at_ns = time.monotonic_ns()
        for cb in tuple(self._loss_callbacks):
            with contextlib.suppress(Exception):
                cb(reason)
        # the push may be gone while TCP still works (a misrouted push, a dead UDP path): stop anyway
        arm = self._arm
        if arm is not None:
            with contextlib.suppress(Exception):
                arm.rm_set_arm_stop()

    # ------------------------------------------------------------------------------- errors
    def _check(self, call: str, ret: int) -> None:
        if ret == 0:
            return
        meaning = SDK_RETURN_CODES.get(ret, "unknown SDK return code")
        where = f"{self.config.ip}:{self.config.port}"
        if ret == -1:
            self._declare_lost(f"{call}: {meaning} ({where})")
            raise LinkLost(f"{call}: {meaning} ({where}); call reconnect()")
        if ret in (-2, -5):
            raise ControllerTimeout(f"{call}: {meaning} ({where}, timeout {self.config.timeout_ms} ms)")
        if ret in (1, -6):
            codes = self._latest.errors if self._latest is not None else ()
            detail = f"; controller errors: {error_text(codes)}" if codes else ""
            raise ControllerError(f"{call}: {meaning}{detail}", codes)
        raise SDKError(call, ret, meaning)

    def _ensure_streamable(self) -> None:
        if self._arm is None:
            raise ArmError("the arm is not connected; call connect()")
        if self._lost_reason is not None:
            raise LinkLost(self._lost_reason)
        st = self._latest
        if st is not None and st.errors:
            raise ControllerError(
                f"the controller reports {error_text(st.errors)}; it ignores pass-through until the cause is "
                f"fixed and clear_errors() is called", st.errors)

    def clear_errors(self) -> None:
        """Clear the controller's latched system errors (``rm_clear_system_err``)."""
        if self._arm is None:
            raise ArmError("the arm is not connected; call connect()")
        self._check("rm_clear_system_err", self._arm.rm_clear_system_err())
        self._prev_q, self._period_avg = None, 0.0
        seq = self._seq
        self.wait_for_state(1.0, newer_than_seq=seq)

    # ------------------------------------------------------------------------------- motion
    def send_joint_setpoint(self, q) -> None:
        """Stream one joint setpoint (rad) with ``rm_movej_canfd``.

        The speed check divides each step by the stream period, taken as the larger of the time
        since the previous setpoint and a running average of that interval: a setpoint that follows
        a late one closely (a sender catching up on its schedule) is judged at the stream's rate,
        not at the short gap, while a sustained too-fast stream is still rejected."""
        self._ensure_streamable()
        now = time.monotonic_ns()
        prev = self._prev_q
        if prev is None:
            prev = self._latest.q if self._latest is not None else None
            elapsed = None  # first point of a stream: only the per-frame step rule applies
        else:
            gap = (now - self._prev_ns) * 1e-9
            period = self._period_avg or gap
            elapsed = max(gap, period)
            self._period_avg = 0.9 * period + 0.1 * min(max(gap, 0.002), 0.020)
        a = validate_joint_setpoint(q, self.limits, prev, elapsed,
                                    max_step=np.radians(self.config.max_step_deg))
        cfg = self.config
        ret = self._arm.rm_movej_canfd(np.degrees(a).tolist(), cfg.follow, 0, cfg.trajectory_mode, cfg.radio)
        if ret != 0:
            self._check("rm_movej_canfd", ret)
        self._prev_q, self._prev_ns = a, now
        self.sent += 1

    def send_cartesian_setpoint(self, position, quaternion) -> None:
        self._ensure_streamable()
        p = np.asarray(position, dtype=np.float64)
        qt = np.asarray(quaternion, dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise SetpointRejected(f"position must be 3 finite numbers (m), got {position!r}")
        if qt.shape != (4,) or not np.all(np.isfinite(qt)) or abs(np.linalg.norm(qt) - 1.0) > 1e-3:
            raise SetpointRejected(f"quaternion must be a unit (w, x, y, z), got {quaternion!r}")
        reach = rm75.D3 + rm75.D5 + self.model.d7
        r = np.linalg.norm(p - np.array([0.0, 0.0, rm75.D1]))
        if r > reach:
            raise SetpointRejected(f"target {p} m is {r:.3f} m from the shoulder, beyond the RM75's {reach:.3f} m "
                                   f"reach")
        cfg = self.config
        pose = p.tolist() + (qt / np.linalg.norm(qt)).tolist()
        ret = self._arm.rm_movep_canfd(pose, cfg.follow, cfg.trajectory_mode, cfg.radio)
        if ret != 0:
            self._check("rm_movep_canfd", ret)
        self._prev_q, self._period_avg = None, 0.0  # the controller's IK picks the joints; re-anchor the step check on state
        self.sent += 1

    def move_joints(self, q, speed_percent: int = 20, timeout_s: float = 30.0) -> None:
        """Planned joint move (``rm_movej``), waiting for the controller's arrival event.

        Unlike the SDK's own blocking call this has a timeout: the arm is stopped and
        :class:`ControllerTimeout` raised if it has not arrived after ``timeout_s``."""
        self._ensure_streamable()
        if not 1 <= int(speed_percent) <= 100:
            raise ValueError(f"speed_percent must be 1..100, got {speed_percent}")
        a = validate_joint_setpoint(q, self.limits)
        self._event.clear()
        self._event_result = None
        self._check("rm_movej", self._arm.rm_movej(np.degrees(a).tolist(), int(speed_percent), 0, 0, 0))
        if not self._event.wait(timeout_s):
            self.stop()
            raise ControllerTimeout(f"rm_movej: the arm did not report arrival within {timeout_s:.1f} s; stopped")
        ok, _device = self._event_result
        if not ok:
            codes = self._latest.errors if self._latest is not None else ()
            raise ControllerError("rm_movej: the controller reports the move failed"
                                  + (f": {error_text(codes)}" if codes else ""), codes)
        self._prev_q, self._period_avg = None, 0.0

    def _on_event(self, event_type: int, ok: bool, device: int) -> None:
        if event_type == 1 and device == 0:
            self._event_result = (ok, device)
            self._event.set()

    def stop(self) -> bool:
        """Quick stop (``rm_set_arm_stop``) from any state; never raises."""
        self._prev_q, self._period_avg = None, 0.0
        arm = self._arm
        if arm is None:
            return False
        try:
            return arm.rm_set_arm_stop() == 0
        except Exception:
            return False
