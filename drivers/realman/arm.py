"""``RealmanArm``: the RealMan RM75 through RealMan's official Python SDK (``robotic-arm``).

What this adds on top of the SDK (see ``../shared/reference/realman-protocol.md`` §2):

* **Streaming** with ``rm_movej_canfd`` (joint pass-through) and ``rm_movep_canfd`` (Cartesian),
  every setpoint validated first (finite, 7 values, inside the joint limits the controller reports,
  no step faster than the joint speed limit or larger than 10° per frame) — a bad one raises
  :class:`~kinebridge.drivers.arm.driver.SetpointRejected` and never reaches the SDK.
* **State from the UDP push**, not TCP polling: the SDK's (process-global) UDP callback is
  dispatched to the driver of the arm that sent it; :meth:`RealmanArm.read_state` returns the
  newest sample without any I/O.
* **Late is not lost.** A state older than ``link_timeout_periods`` push periods (20 ms) is *late*:
  :attr:`RealmanArm.state_late` / :attr:`~RealmanArm.state_age_s` / :meth:`~RealmanArm.link_health`
  tell the control loop to hold its last safe setpoint, streaming still works. The link is *lost*
  only after ``link_lost_s`` (0.1 s) of silence, a FIN or RST from the controller (seen in the TCP
  state of the SDK's socket, on every send and every 20 ms), a failed send, or the SDK's receive
  thread gone: then streaming is refused (:class:`LinkLost`), the arm gets a quick stop and the
  ``on_link_lost`` callbacks run. Loss is decided from timestamps on every call, so no setpoint leaves
  on a state older than the window whenever the watchdog thread wakes up.
* **Reconnect that survives the SDK**: ``reconnect()`` rebuilds the connection (the SDK has none of its
  own) after any number of controller-side closes: handles are deleted without closing a socket the
  SDK's receive thread still watches, and a receive thread found dead is restarted
  (:mod:`kinebridge.drivers.realman.sdk`). A failed connect says what failed: nothing listening, no
  route, no handshake reply, or the SDK's receive thread gone.
* **Errors**: SDK return codes become exceptions (``-1`` → :class:`LinkLost`, ``-2`` →
  :class:`ControllerTimeout`, ``1`` → :class:`ControllerError` with the controller's error codes
  and their meaning, …); controller error codes in the push surface on the next send.
* **Stop from any state**: :meth:`stop` sends the controller's quick stop and never raises.

The SDK keeps process-global state (thread mode, UDP port, callbacks, five handles); it is initialised
once per process in triple-thread mode (:mod:`kinebridge.drivers.realman.sdk`) and the ctypes callbacks
stay referenced.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np

from kinebridge.drivers.arm.driver import (
    ArmConnectionError, ArmDriver, ArmError, ArmState, ControllerError, ControllerTimeout, JointLimits,
    LinkLost, SDKError, SetpointRejected, validate_joint_setpoint,
)
from kinebridge.drivers.arm.model import ArmModel, arm_model
from kinebridge.drivers.realman import sdk
from kinebridge.drivers.realman.config import RealmanConfig
from kinebridge.drivers.realman.protocol import ARM_STATUS_NAMES
from kinebridge.kernels import rm75

__all__ = ["RealmanConfig", "RealmanArm", "LinkHealth", "SDK_RETURN_CODES", "error_text"]

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
    """The SDK (a clear error if it is missing), initialised once per process in triple-thread mode with
    this module's callbacks registered (:mod:`kinebridge.drivers.realman.sdk`)."""
    try:
        rm = sdk.sdk()
    except sdk.SdkUnavailable as exc:  # pragma: no cover - robotic-arm is a core dependency
        raise ArmError(str(exc)) from exc
    with _SDK_LOCK:
        if not _SDK["ready"]:
            _SDK["udp_cb"] = rm.rm_realtime_arm_state_callback_ptr(_on_udp)
            _SDK["event_cb"] = rm.rm_event_callback_ptr(_on_event)
            sdk.register_callback("rm_realtime_arm_state_call_back", _SDK["udp_cb"])
            sdk.register_callback("rm_get_arm_event_call_back", _SDK["event_cb"])
            sdk.on_reinitialise(_handles_freed)
            _SDK["ready"] = True
    return rm


def _handles_freed(reason: str) -> None:
    """The SDK was re-initialised: every connected driver's handle is gone."""
    for arm in tuple(_BY_HANDLE.values()):
        arm._handle_gone(reason)


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


def _tcp_probe(ip: str, port: int, timeout_s: float = 0.5) -> str:
    """Why a handshake failed, told by a plain TCP connect: who listens at ``ip:port``."""
    try:
        with socket.create_connection((ip, port), timeout=timeout_s):
            return "listening"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as exc:
        return f"error: {exc.strerror or exc}"


# TCP states in ``TCP_INFO`` (linux/tcp_states.h)
_TCP_CLOSE, _TCP_CLOSE_WAIT = 7, 8


@dataclass(frozen=True)
class LinkHealth:
    """The link to the controller at one instant (:meth:`RealmanArm.link_health`).

    ``status``: ``"ok"`` (newest state younger than ``late_after_s``), ``"late"`` (older, but the push
    has been silent for less than ``lost_after_s``: hold, do not plan on it), ``"lost"``, ``"waiting"``
    (connected, no state yet) or ``"disconnected"``. ``age_s``: age of the newest state (inf before the
    first). ``late_episodes``: pushes that arrived later than ``late_after_s`` since connect;
    ``longest_gap_s``: the longest push gap since connect; ``max_send_age_s``: the oldest state any
    accepted setpoint was sent on (never above ``lost_after_s``). ``lost_at_ns``: when the link became
    lost (silence: last push + ``lost_after_s``; otherwise when the close or failure was seen)."""

    status: str
    age_s: float
    late_after_s: float
    lost_after_s: float
    late_episodes: int
    longest_gap_s: float
    max_send_age_s: float
    lost_reason: str | None
    lost_at_ns: int


# --------------------------------------------------------------------------------------- driver
class RealmanArm(ArmDriver):
    """A RealMan RM75 on its controller's JSON/TCP port, through the official SDK.

    **Late is not lost.** The newest state is *late* once it is older than the late budget
    (``link_timeout_periods`` push periods, 20 ms by default): the link is up, the arm follows what was
    sent, but nothing should be planned on that state — the control loop holds its last safe
    setpoint (:attr:`state_late`, :attr:`state_age_s`, :meth:`link_health`, :attr:`last_setpoint`).
    The link is *lost* only when the push has been silent for ``link_lost_s`` (0.1 s), or the controller
    closed or reset the TCP connection, or a send failed: then :meth:`read_state` and every send raise
    :class:`LinkLost`, the arm gets a quick stop, the ``on_link_lost`` callbacks run, and
    :meth:`reconnect` is needed. The loss is decided from timestamps by whichever call comes first, so
    no setpoint is ever sent on a state older than ``link_lost_s`` however late the watchdog thread
    wakes up."""

    dof = 7

    def __init__(self, config: RealmanConfig | None = None, model: ArmModel | None = None, **overrides):
        super().__init__()
        self.config = (config or RealmanConfig()).model_copy(update=overrides) if overrides else (
            config or RealmanConfig())
        RealmanConfig.model_validate(self.config.model_dump())  # overrides are validated too
        self._arm = None
        self._handle_id = -1
        self._handle_epoch = -1
        self._stale = False                 # the SDK freed the handle (re-initialisation): never pass it again
        self.info: dict = {}
        self.model: ArmModel = model or arm_model("RM75-B")   # the configured arm; limits ∩ controller's at connect
        self.limits: JointLimits | None = None
        self._lock = threading.Lock()       # link state
        self._sdk_lock = threading.RLock()  # the SDK handle's lifetime against calls on it
        self._late_ns = int(round(self.config.late_after_s * 1e9))
        self._lost_ns = int(round(self.config.link_lost_s * 1e9))
        self._period_ns = int(round(self.config.push_period_s * 1e9))
        self._stall_ns = max(4 * self._period_ns, 20_000_000)   # the watchdog silent this long: a stall
        self._watch_ns = 0                  # the watchdog's last wake-up
        self._queued_ns = self._queued_seen_ns = 0   # an unread push's kernel stamp, and when first seen
        self._latest: ArmState | None = None
        self._seq = 0
        self._last_push_ns = 0
        self._resumed_ns = 0                # end of the last stall of this process (silence counts from there)
        self._lost_reason: str | None = None
        self.lost_at_ns = 0
        self._loss_pending = False          # declared; callbacks and stop not run yet
        self._loss_callbacks: list[Callable[[str], None]] = []
        self._watchdog: threading.Thread | None = None
        self._stop_watchdog = threading.Event()
        self._wake = threading.Event()
        self._tcp: socket.socket | None = None   # a dup of the SDK's socket: its TCP state tells a close
        self._udp: list[socket.socket] = []      # dups of the SDK's push socket: unread pushes are peeked at
        self._late_episodes = 0
        self._longest_gap_ns = 0
        self._max_send_age_ns = 0
        self._prev_q: np.ndarray | None = None
        self._prev_ns = 0
        self._period_avg = 0.0
        self._event = threading.Event()
        self._event_result: tuple[bool, int] | None = None
        self.sent = 0
        self.reconnects = 0

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
        where = f"{cfg.ip}:{cfg.port}"
        if sdk.receive_thread_alive() is False:        # died earlier in this process: restart it first
            try:
                sdk.reinitialise("the RealMan SDK's TCP receive thread had exited before this connect")
            except sdk.SdkUnavailable as exc:
                raise ArmConnectionError(f"could not connect to the RealMan controller at {where}: {exc}") from None
        arm = rm.RoboticArm()
        arm.rm_set_timeout(cfg.timeout_ms)
        try:
            handle = arm.rm_create_robot_arm(cfg.ip, cfg.port, level=3)
        except ValueError:          # the wrapper dereferences NULL when the SDK has no free handle left
            raise ArmConnectionError(
                f"could not connect to the RealMan controller at {where}: the SDK's five arm handles are all in "
                f"use in this process (close() arms that are no longer used)") from None
        if handle.id == -1:
            sdk.release(arm)      # a failed handshake's handle stays in the SDK's list: delete it safely
            raise ArmConnectionError(self._connect_failure())
        epoch = sdk.epoch()
        ret, info = arm.rm_get_robot_info()
        if ret != 0 or info.get("arm_dof") != 7 or "75" not in str(info.get("arm_model", "")):
            sdk.release(arm, epoch)
            raise ArmConnectionError(f"the arm at {where} is not a 7-DoF RM75 (robot info {info})")
        variant = "RM75-6F" if "6F" in str(info.get("force_type", "")) else "RM75-B"
        if variant != self.model.name:
            sdk.release(arm, epoch)
            raise ArmConnectionError(f"the arm at {where} is an {variant} (robot info {info}), the "
                                     f"configuration says {self.model.name}: set [arm] model = \"{variant}\"")
        with self._lock:               # not usable until the push arrives; no loss to report meanwhile
            self._lost_reason, self._loss_pending = f"connecting to {where}", False
        with self._sdk_lock:
            self._arm, self._handle_id, self._handle_epoch, self._stale = arm, int(handle.id), epoch, False
        self.info = dict(info)
        try:
            fd = sdk.socket_fd(arm)
            self._tcp = socket.socket(fileno=os.dup(fd)) if fd is not None else None
            self.limits = self._read_limits()
            # compile / load the setpoint check now, before the push is watched: a cold load holds the GIL
            # for ~0.3 s, which would starve the state callback (here or on the first streamed setpoint)
            mid = 0.5 * (self.limits.q_min + self.limits.q_max)
            validate_joint_setpoint(mid, self.limits, mid, 0.01, max_step=0.1)
            host_ip = cfg.host_ip or _route_ip(cfg.ip, cfg.port)
            push = rm.rm_realtime_push_config_t(
                cfg.push_cycle, True, cfg.udp_port, -1, host_ip,
                rm.rm_udp_custom_config_t(joint_speed=1, arm_current_status=1))
            self._check("rm_set_realtime_push", arm.rm_set_realtime_push(push))
            for old in self._udp:
                old.close()
            self._udp = sdk.push_sockets(cfg.udp_port)
            with self._lock:
                self._lost_reason, self.lost_at_ns, self._loss_pending = None, 0, False
                self._last_push_ns = self._resumed_ns = 0
                self._late_episodes = self._longest_gap_ns = self._max_send_age_ns = 0
            _BY_IP.setdefault(cfg.ip, weakref.WeakSet()).add(self)
            _BY_HANDLE[self._handle_id] = self
            self._start_watchdog()
            try:
                self.wait_for_state(cfg.connect_timeout_s, newer_than_seq=self._seq)
            except LinkLost:
                raise ArmConnectionError(
                    f"connected to {where} but no UDP state push reached {host_ip}:{cfg.udp_port} within "
                    f"{cfg.connect_timeout_s:.1f} s; check host_ip, the firewall, and that no other process "
                    f"uses UDP port {cfg.udp_port}") from None
        except ArmConnectionError:
            self._teardown(keep_watchdog=True)
            raise
        except ArmError as exc:       # a request of the handshake failed: still a failed connect (retried)
            self._teardown(keep_watchdog=True)
            raise ArmConnectionError(f"connecting to {where} failed after the handshake: {exc}") from exc
        except BaseException:
            self._teardown(keep_watchdog=True)
            raise
        self._prev_q, self._period_avg = None, 0.0
        if cfg.thread_priority:
            self._raise_threads(cfg.thread_priority)

    def _raise_threads(self, priority: int) -> bool:
        """SCHED_FIFO ``priority`` for the threads the link depends on: the SDK's receive and UDP threads
        (the UDP one runs the state callback) and the watchdog. False where not permitted."""
        from kinebridge.drivers.host.realtime import try_sched_fifo

        tids = sdk.thread_ids()
        if self._watchdog is not None and self._watchdog.native_id is not None:
            tids.append(self._watchdog.native_id)
        return all([try_sched_fifo(priority, tid) for tid in tids]) and bool(tids)

    def _connect_failure(self) -> str:
        """What a failed handshake means, in words: nothing listening, no route, no handshake reply, or
        the SDK's receive thread gone (then no reply could ever arrive)."""
        cfg = self.config
        head = f"could not connect to the RealMan controller at {cfg.ip}:{cfg.port}"
        if sdk.receive_thread_alive() is False:
            return (f"{head}: the RealMan SDK's TCP receive thread has exited (SDK 1.1.6 defect: a select() error "
                    f"ends it for good), so no handshake reply can reach this process; the next connect() "
                    f"restarts the SDK")
        probe = _tcp_probe(cfg.ip, cfg.port)
        if probe == "refused":
            return (f"{head}: nothing listening (connection refused). Check the address and the port; for the "
                    f"simulator run `kinebridge sim --port {cfg.port}`")
        if probe == "listening":
            return (f"{head}: it accepts TCP connections but a reply to the SDK's connect handshake did not arrive "
                    f"within {cfg.timeout_ms} ms (another program holding the arm, a controller still booting, or "
                    f"not a RealMan controller)")
        return (f"{head}: no TCP connection ({probe}); check the cable, the address and that the controller is "
                f"powered")

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
        if self._arm is not None and stop and self.link_alive:
            with contextlib.suppress(Exception), self._sdk_lock:
                if not self._stale:
                    self._arm.rm_set_arm_slow_stop()
        self._teardown()

    def _teardown(self, keep_watchdog: bool = False) -> None:
        if not keep_watchdog:
            self._stop_watchdog.set()
            self._wake.set()
            if self._watchdog is not None and self._watchdog is not threading.current_thread():
                self._watchdog.join(timeout=1.0)
            self._watchdog = None
        arms = _BY_IP.get(self.config.ip)
        if arms is not None:
            arms.discard(self)
        if _BY_HANDLE.get(self._handle_id) is self:
            _BY_HANDLE.pop(self._handle_id, None)
        probe, self._tcp = self._tcp, None
        for p in [probe, *self._udp]:
            if p is not None:
                with contextlib.suppress(OSError):
                    p.close()
        self._udp = []
        with self._sdk_lock:
            arm, epoch, stale = self._arm, self._handle_epoch, self._stale
            self._arm, self._handle_id = None, -1
            if arm is not None and not stale:
                sdk.release(arm, epoch)   # never closes a socket the SDK's receive thread still watches

    def _handle_gone(self, reason: str) -> None:
        """The SDK freed every handle (re-initialised after its receive thread died)."""
        with self._sdk_lock:
            if self._arm is None:
                return
            self._stale = True
        self._mark_lost(f"{reason}; the SDK was re-initialised, which ended this connection too: call reconnect()")

    def reconnect(self, timeout_s: float = 5.0) -> None:
        """Drop the old handle and connect again, retrying until ``timeout_s``.

        Works after any number of controller-side closes and resets: the old handle is deleted without
        closing a socket the SDK's receive thread still watches, and a receive thread found dead is
        restarted (:mod:`kinebridge.drivers.realman.sdk`). The error says what failed last."""
        self._teardown(keep_watchdog=True)
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.connect()
                self.reconnects += 1
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
        """True while connected, with state, and not lost (a late state still counts as alive)."""
        return self._status(time.monotonic_ns()) in ("ok", "late")

    def on_link_lost(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` (on the watchdog thread) when the link is declared lost."""
        self._loss_callbacks.append(callback)

    @property
    def lost_reason(self) -> str | None:
        return self._lost_reason

    # --------------------------------------------------------------------------- late / lost
    @property
    def late_after_s(self) -> float:
        """The late budget: a state older than this is late (``link_timeout_periods`` push periods)."""
        return self._late_ns * 1e-9

    @property
    def lost_after_s(self) -> float:
        """The window: a push silent this long means the link is lost (``link_lost_s``)."""
        return self._lost_ns * 1e-9

    @property
    def state_age_s(self) -> float:
        """Age (s) of the newest state; ``inf`` before the first. No I/O, no lock."""
        last = self._last_push_ns
        return (time.monotonic_ns() - last) * 1e-9 if last else math.inf

    @property
    def state_late(self) -> bool:
        """True when the newest state is older than the late budget (or there is none, or the link is
        lost): hold the last safe setpoint instead of planning on it. No I/O, no lock."""
        last = self._last_push_ns
        return not last or time.monotonic_ns() - last > self._late_ns or self._lost_reason is not None

    @property
    def link_state(self) -> str:
        """``"ok"``, ``"late"``, ``"lost"``, ``"waiting"`` (no state yet) or ``"disconnected"``."""
        return self._status(time.monotonic_ns())

    @property
    def last_setpoint(self) -> np.ndarray | None:
        """The last joint setpoint streamed (rad), or None (none yet since connect, a stop or a planned move)."""
        return self._prev_q

    def link_health(self) -> LinkHealth:
        """A snapshot of :class:`LinkHealth` (status, age, budgets, late episodes, longest gap…)."""
        now = time.monotonic_ns()
        status = self._status(now)
        last = self._last_push_ns
        return LinkHealth(status, (now - last) * 1e-9 if last else math.inf, self.late_after_s,
                          self.lost_after_s, self._late_episodes, self._longest_gap_ns * 1e-9,
                          self._max_send_age_ns * 1e-9, self._lost_reason, self.lost_at_ns)

    def _status(self, now: int) -> str:
        if self._arm is None:
            return "disconnected"
        self._check_silence(now)
        if self._lost_reason is not None:
            return "lost"
        last = self._last_push_ns
        if not last or self._latest is None:
            return "waiting"
        return "late" if now - last > self._late_ns else "ok"

    def _check_silence(self, now: int) -> None:
        """Declare the link lost once the push has been silent for the window (callable from any thread).

        The clock only runs while this process runs: after a stall of the process (GIL held by a JIT
        compile, swapped out, suspended) noticed by the watchdog, the silence counts from the stall's end.
        A push newer than the newest state that still waits unread in the SDK's UDP socket (its kernel
        receive stamp, peeked) means this process is behind, not that the controller is silent: the
        silence then counts from when that datagram was first seen waiting.
        A caller that finds the window passed while the watchdog has not run for a while either (so this
        process, or its GIL, was stalled: the pushes may be queued behind the GIL) first gives the push
        two periods to arrive; only a link still silent then is lost."""
        last = self._last_push_ns
        if not last or self._lost_reason is not None:
            return
        ref = max(last, self._resumed_ns)
        if now - ref <= self._lost_ns:
            return
        queued = sdk.queued_push(self._udp, self.config.ip) if self._udp else None
        if queued is not None and queued > last:
            # a push newer than the newest state waits unread in the SDK's socket: this process is behind
            # (starved, or its GIL held), the controller is not silent. The silence counts from when that
            # datagram was first seen waiting, so a backlog nobody drains still ends in a loss.
            if queued != self._queued_ns:
                self._queued_ns, self._queued_seen_ns = queued, now
            if self._queued_seen_ns > self._resumed_ns:
                self._resumed_ns = self._queued_seen_ns
            ref = max(last, self._resumed_ns)
            if now - ref <= self._lost_ns:
                return
        if now - self._watch_ns > self._stall_ns and threading.current_thread() is not self._watchdog:
            seq = self._seq
            wait_until = time.monotonic_ns() + 2 * self._period_ns
            while self._seq == seq and time.monotonic_ns() < wait_until:
                time.sleep(0.0005)            # lets the SDK's UDP thread take the GIL and deliver
            if self._seq != seq:
                return
            last = self._last_push_ns
            ref = max(last, self._resumed_ns)
            now = time.monotonic_ns()
            if now - ref <= self._lost_ns:
                return
        self._mark_lost(f"no state push from {self.config.ip} for {(now - last) / 1e6:.1f} ms (lost after "
                        f"link_lost_s = {self._lost_ns / 1e6:.0f} ms; late after {self._late_ns / 1e6:.0f} ms); "
                        f"streaming stopped, call reconnect()", at_ns=ref + self._lost_ns)

    def _mark_lost(self, reason: str, at_ns: int | None = None) -> bool:
        """Record the loss (first reason wins) and wake the watchdog to stop the arm and tell the callbacks."""
        with self._lock:
            if self._lost_reason is not None:
                return False
            self._lost_reason = reason
            self.lost_at_ns = at_ns if at_ns is not None else time.monotonic_ns()
            self._loss_pending = True
        self._wake.set()
        return True

    def _start_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.is_alive():
            return
        self._stop_watchdog.clear()
        self._watchdog = threading.Thread(target=self._watch, name="realman-link-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        """One thread for the driver's life (kept across reconnects, so a priority given to it stays):
        every push period it checks the silence, every 20 ms the TCP state of the SDK's socket (a FIN or
        RST from the controller), every 0.2 s that the SDK's receive thread lives; it runs the loss
        callbacks and sends the stop."""
        period_s = self.config.push_period_s
        stall_ns = self._lost_ns // 2
        tcp_every = max(1, int(round(0.02 / period_s)))
        thread_every = max(1, int(round(0.2 / period_s)))
        prev = time.monotonic_ns()
        k = 0
        while not self._stop_watchdog.is_set():
            self._wake.wait(period_s)
            self._wake.clear()
            if self._stop_watchdog.is_set():
                break
            now = time.monotonic_ns()
            if now - prev > period_s * 1e9 + stall_ns:
                self._resumed_ns = now       # this process was stalled: a missing push is no evidence
            prev = self._watch_ns = now
            k += 1
            if self._arm is not None and self._lost_reason is None:
                self._check_silence(now)
                if k % tcp_every == 0:
                    self._check_tcp()
                if k % thread_every == 0 and sdk.receive_thread_alive() is False:
                    self._mark_lost("the RealMan SDK's TCP receive thread has exited (SDK 1.1.6 defect: a select() "
                                    "error ends it for good): no reply from the controller reaches this process any "
                                    "more; reconnect() restarts the SDK")
            if self._loss_pending:
                self._notify_loss()

    def _tcp_closed(self) -> str | None:
        """How the controller ended the TCP connection, from the socket's TCP state (None: it did not)."""
        probe = self._tcp
        if probe is None:
            return None
        try:
            state = probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        except OSError:
            return None
        if state == _TCP_CLOSE_WAIT:
            what = "closed the TCP connection (FIN)"
        elif state == _TCP_CLOSE:
            what = "reset the TCP connection (RST)"
        else:
            return None
        return (f"the controller at {self.config.ip}:{self.config.port} {what} (a reboot, a restart or another "
                f"client taking over); streaming stopped, call reconnect()")

    def _check_tcp(self) -> None:
        reason = self._tcp_closed()
        if reason is not None:
            self._mark_lost(reason)

    def _notify_loss(self) -> None:
        with self._lock:
            if not self._loss_pending:
                return
            self._loss_pending = False
            reason = self._lost_reason or ""
        for cb in tuple(self._loss_callbacks):
            with contextlib.suppress(Exception):
                cb(reason)
        if "TCP connection" in reason:
            return                      # nothing can be sent on a closed connection
        # the push may be gone while TCP still works (a misrouted push, a dead UDP path): stop anyway
        with self._sdk_lock:
            arm = self._arm
            if arm is not None and not self._stale:
                with contextlib.suppress(Exception):
                    arm.rm_set_arm_stop()

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
            prev = self._last_push_ns
            if prev:
                gap = now - prev
                if gap > self._longest_gap_ns:
                    self._longest_gap_ns = gap
                if gap > self._late_ns:
                    self._late_episodes += 1
            self._seq += 1
            st = ArmState(self._seq, now, q, qd, pos, quat, errors, status)
            self._latest = st
            self._last_push_ns = now
        self._emit(st)

    def read_state(self) -> ArmState:
        """The newest state, without I/O. A late state is returned (check :attr:`state_late`); raises
        :class:`LinkLost` once the link is lost."""
        st = self._latest
        if self._arm is None:
            raise ArmError("the arm is not connected; call connect()")
        self._check_silence(time.monotonic_ns())
        if self._lost_reason is not None:
            raise LinkLost(self._lost_reason)
        if st is None:
            raise LinkLost(f"no state push from {self.config.ip} yet")
        return st

    # ------------------------------------------------------------------------------- errors
    def _check(self, call: str, ret: int) -> None:
        if ret == 0:
            return
        meaning = SDK_RETURN_CODES.get(ret, "unknown SDK return code")
        where = f"{self.config.ip}:{self.config.port}"
        if ret == -1:
            closed = self._tcp_closed()
            reason = f"{call}: {meaning} ({where}){': ' + closed if closed else '; call reconnect()'}"
            self._mark_lost(reason)
            raise LinkLost(reason)
        if ret in (-2, -5):
            raise ControllerTimeout(f"{call}: {meaning} ({where}, timeout {self.config.timeout_ms} ms)")
        if ret in (1, -6):
            codes = self._latest.errors if self._latest is not None else ()
            detail = f"; controller errors: {error_text(codes)}" if codes else ""
            raise ControllerError(f"{call}: {meaning}{detail}", codes)
        raise SDKError(call, ret, meaning)

    def _ensure_streamable(self, now: int) -> int:
        """Raise unless a command may go out now; returns the age (ns) of the newest state, counted from
        the end of any stall of this process (never above the window: older means lost)."""
        if self._arm is None:
            raise ArmError("the arm is not connected; call connect()")
        self._check_silence(now)
        if self._lost_reason is None and self._tcp is not None:
            closed = self._tcp_closed()      # ~1 µs: nothing is sent into a connection the controller closed
            if closed is not None:
                self._mark_lost(closed)
        if self._lost_reason is not None:
            raise LinkLost(self._lost_reason)
        st = self._latest
        if st is not None and st.errors:
            raise ControllerError(
                f"the controller reports {error_text(st.errors)}; it ignores pass-through until the cause is "
                f"fixed and clear_errors() is called", st.errors)
        last = self._last_push_ns
        return now - max(last, self._resumed_ns) if last else 0

    def _sent_on(self, age_ns: int) -> None:
        self.sent += 1
        if age_ns > self._max_send_age_ns:
            self._max_send_age_ns = age_ns

    def _ensure_streamable_ignoring_errors(self) -> None:
        if self._arm is None:
            raise ArmError("the arm is not connected; call connect()")
        self._check_silence(time.monotonic_ns())
        if self._lost_reason is not None:
            raise LinkLost(self._lost_reason)

    def clear_errors(self) -> None:
        """Clear the controller's latched system errors (``rm_clear_system_err``)."""
        self._ensure_streamable_ignoring_errors()
        with self._sdk_lock:
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
        now = time.monotonic_ns()
        age = self._ensure_streamable(now)
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
        with self._sdk_lock:
            if self._arm is None:
                raise ArmError("the arm is not connected; call connect()")
            ret = self._arm.rm_movej_canfd(np.degrees(a).tolist(), cfg.follow, 0, cfg.trajectory_mode, cfg.radio)
        if ret != 0:
            self._check("rm_movej_canfd", ret)
        self._prev_q, self._prev_ns = a, now
        self._sent_on(age)

    def send_cartesian_setpoint(self, position, quaternion) -> None:
        age = self._ensure_streamable(time.monotonic_ns())
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
        with self._sdk_lock:
            if self._arm is None:
                raise ArmError("the arm is not connected; call connect()")
            ret = self._arm.rm_movep_canfd(pose, cfg.follow, cfg.trajectory_mode, cfg.radio)
        if ret != 0:
            self._check("rm_movep_canfd", ret)
        self._prev_q, self._period_avg = None, 0.0  # the controller's IK picks the joints; re-anchor the step check on state
        self._sent_on(age)

    def move_joints(self, q, speed_percent: int = 20, timeout_s: float = 30.0) -> None:
        """Planned joint move (``rm_movej``), waiting for the controller's arrival event.

        Unlike the SDK's own blocking call this has a timeout: the arm is stopped and
        :class:`ControllerTimeout` raised if it has not arrived after ``timeout_s``."""
        self._ensure_streamable(time.monotonic_ns())
        if not 1 <= int(speed_percent) <= 100:
            raise ValueError(f"speed_percent must be 1..100, got {speed_percent}")
        a = validate_joint_setpoint(q, self.limits)
        self._event.clear()
        self._event_result = None
        with self._sdk_lock:
            ret = self._arm.rm_movej(np.degrees(a).tolist(), int(speed_percent), 0, 0, 0)
        self._check("rm_movej", ret)
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
        try:
            with self._sdk_lock:
                arm = self._arm
                if arm is None or self._stale:
                    return False
                return arm.rm_set_arm_stop() == 0
        except Exception:
            return False
