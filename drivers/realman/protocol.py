"""RealMan controller JSON protocol: wire framing, units, error codes and reply builders.

Shared by the simulated controller (:mod:`kinebridge.drivers.realman.sim.controller`) and the RealMan driver.
Everything here follows ``shared/reference/realman-protocol.md`` (JSON protocol 3.7.x as accepted by
RealMan's official SDK robotic-arm 1.1.6):

* **Framing** (§1.1): every request and reply is one JSON object followed by ``\\r\\n``. A stream may
  split a message over several TCP segments or carry several messages in one; messages may be
  pretty-printed (internal ``\\n`` and tabs), so :class:`FrameReader` splits *only* on ``\\r\\n``.
  :func:`encode` writes compact JSON plus ``\\r\\n`` (the SDK never sees a reply ending in plain ``\\n``).
* **Units on the wire** (§1.1 table): joint angles in 0.001°, Cartesian positions in µm (0.001 mm),
  Euler angles in 0.001 rad (roll-pitch-yaw, R = Rz·Ry·Rx), quaternions (w, x, y, z) scaled by 1e6,
  joint speed limits in 0.001 RPM and acceleration limits in 0.001 RPM/s. The helpers below convert
  between those integers and SI (rad, m, rad/s, rad/s²). Integers are rounded half away from zero.
* **Error codes** (§1.9): :data:`SYSTEM_ERRORS` (``err[]`` of the arm state and the UDP push) and
  :data:`JOINT_ERROR_BITS` (``joint_err_code`` bit flags), with English meanings.
* **Reply builders**: the exact reply shapes SDK 1.1.6 accepts (pairing on ``"command"``, else on
  ``"state"``; success flags are JSON booleans).

Only the standard library and NumPy are used; nothing here touches sockets.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "CRLF", "MAX_LINE_BYTES", "FrameReader", "encode", "decode",
    "deg_milli_to_rad", "rad_to_deg_milli", "um_to_m", "m_to_um", "mrad_to_rad", "rad_to_mrad",
    "quat_from_wire", "quat_to_wire", "pose_from_wire", "pose_to_wire", "pose_quat_from_wire",
    "rpm_milli_to_rad_s", "rad_s_to_rpm_milli", "rpm_milli_s_to_rad_s2", "rad_s2_to_rpm_milli_s",
    "rad_s_to_centideg_s", "wire_int",
    "SYSTEM_ERRORS", "JOINT_ERROR_BITS", "error_meaning", "joint_error_flags",
    "ERR_OK", "ERR_JOINT_COMM", "ERR_JOINT_LIMIT", "ERR_UNREACHABLE", "ERR_PLANNER", "ERR_OVERSPEED",
    "ERR_SPEED_LIMIT", "ERR_ACC_LIMIT", "ERR_JOINT_DISABLED",
    "ARM_STATUS_NAMES", "arm_status_index", "TRAJECTORY_TYPES", "DEVICE_ARM", "DEVICE_GRIPPER",
    "flag_reply", "receive_state_reply", "trajectory_state_event", "arm_state_reply", "joint_degree_reply",
    "current_trajectory_reply", "realtime_push_reply", "software_info_reply", "dh_reply",
    "error_reply", "JSON_ERROR_STATE",
]

CRLF = b"\r\n"
#: Longest message accepted before the end of line (bytes). A ``movej_canfd`` is about 130 bytes and
#: the largest SDK request a few hundred; anything past this is discarded up to the next ``\r\n``.
MAX_LINE_BYTES = 64 * 1024


# ------------------------------------------------------------------------------------------ framing
class FrameReader:
    """Split a TCP byte stream into messages at ``\\r\\n`` only.

    ``feed(data)`` returns the complete messages found so far (without the terminator, in order).
    A message split across calls is reassembled, several messages in one call are all returned,
    empty lines are skipped, and internal ``\\n``/tabs (pretty-printed JSON) stay inside a message.

    The buffer is bounded by ``max_line`` bytes: when a message grows past it without a terminator,
    its bytes are discarded up to the next ``\\r\\n`` and ``None`` is returned in its place (once per
    over-long message), so the caller can answer with an error; :attr:`overflows` counts them.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES):
        if max_line < 2:
            raise ValueError("max_line must be at least 2 bytes")
        self.max_line = int(max_line)
        self._buf = bytearray()
        self._discarding = False
        self.overflows = 0

    def feed(self, data: bytes) -> list[bytes | None]:
        out: list[bytes | None] = []
        if not data:
            return out
        buf = self._buf
        start = len(buf) - 1 if buf else 0          # a '\r' at the end of the last chunk may pair with '\n'
        buf += data
        pos = 0
        while True:
            i = buf.find(CRLF, max(start, pos))
            if i < 0:
                break
            if self._discarding:
                self._discarding = False
                out.append(None)
            elif i - pos > self.max_line:
                self.overflows += 1
                out.append(None)
            elif i > pos:
                line = bytes(buf[pos:i])
                if line.strip():
                    out.append(line)
            pos = i + 2
            start = pos
        del buf[:pos]
        if len(buf) > self.max_line:
            # over-long message: keep only a trailing '\r' (it may start the terminator)
            if not self._discarding:
                self._discarding = True
                self.overflows += 1
            tail = buf[-1:] if buf.endswith(b"\r") else b""
            buf.clear()
            buf += tail
        return out

    @property
    def pending(self) -> int:
        """Bytes buffered while waiting for a terminator."""
        return len(self._buf)


def encode(obj: Any) -> bytes:
    """Compact JSON + ``\\r\\n``, the form the controller sends (booleans stay JSON booleans)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8") + CRLF


def decode(line: bytes) -> Any:
    """Parse one message (without its terminator). Raises ``ValueError`` on malformed JSON or UTF-8."""
    try:
        return json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed JSON: {exc}") from None


# -------------------------------------------------------------------------------------------- units
def wire_int(x: float) -> int:
    """Round to the nearest integer, half away from zero (the controller's integer wire units)."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def _ints(values: Iterable[float], scale: float) -> list[int]:
    return [wire_int(float(v) * scale) for v in values]


_DEG_MILLI_PER_RAD = 180_000.0 / math.pi


def deg_milli_to_rad(values) -> np.ndarray:
    """Joint angles 0.001° (ints) → rad."""
    return np.asarray(values, dtype=float) / _DEG_MILLI_PER_RAD


def rad_to_deg_milli(values) -> list[int]:
    """Joint angles rad → 0.001° (ints)."""
    return _ints(np.asarray(values, dtype=float).ravel(), _DEG_MILLI_PER_RAD)


def um_to_m(values) -> np.ndarray:
    """Positions µm → m."""
    return np.asarray(values, dtype=float) * 1e-6


def m_to_um(values) -> list[int]:
    """Positions m → µm (ints)."""
    return _ints(np.asarray(values, dtype=float).ravel(), 1e6)


def mrad_to_rad(values) -> np.ndarray:
    """Euler angles 0.001 rad → rad."""
    return np.asarray(values, dtype=float) * 1e-3


def rad_to_mrad(values) -> list[int]:
    """Euler angles rad → 0.001 rad (ints)."""
    return _ints(np.asarray(values, dtype=float).ravel(), 1e3)


def quat_from_wire(values) -> np.ndarray:
    """Quaternion (w, x, y, z) ×1e6 → unit quaternion (normalised; raises on a zero quaternion)."""
    q = np.asarray(values, dtype=float) * 1e-6
    n = float(np.linalg.norm(q))
    if not (n > 1e-9 and math.isfinite(n)):
        raise ValueError("quaternion has zero or non-finite norm")
    return q / n


def quat_to_wire(q) -> list[int]:
    """Unit quaternion (w, x, y, z) → ints ×1e6."""
    return _ints(np.asarray(q, dtype=float).ravel(), 1e6)


def pose_from_wire(pose) -> np.ndarray:
    """``[x, y, z µm, rx, ry, rz mrad]`` → ``[x, y, z m, rx, ry, rz rad]``."""
    p = np.asarray(pose, dtype=float)
    return np.concatenate([p[:3] * 1e-6, p[3:6] * 1e-3])


def pose_to_wire(pose) -> list[int]:
    """``[x, y, z m, rx, ry, rz rad]`` → ``[µm ×3, mrad ×3]`` ints."""
    p = np.asarray(pose, dtype=float).ravel()
    return m_to_um(p[:3]) + rad_to_mrad(p[3:6])


def pose_quat_from_wire(pose_quat) -> np.ndarray:
    """``[x, y, z µm, w, x, y, z ×1e6]`` → ``[x, y, z m, w, x, y, z]`` (quaternion normalised)."""
    p = np.asarray(pose_quat, dtype=float)
    return np.concatenate([p[:3] * 1e-6, quat_from_wire(p[3:7])])


# 0.001 RPM: 1 RPM = 6 °/s, so value × 6 / 1000 = °/s (30000 → 180 °/s; the SDK converts the same way)
_RPM_MILLI_TO_RAD_S = 6.0 / 1000.0 * math.pi / 180.0


def rpm_milli_to_rad_s(values) -> np.ndarray:
    """Joint speed limits 0.001 RPM → rad/s."""
    return np.asarray(values, dtype=float) * _RPM_MILLI_TO_RAD_S


def rad_s_to_rpm_milli(values) -> list[int]:
    """Joint speed limits rad/s → 0.001 RPM (ints)."""
    return _ints(np.asarray(values, dtype=float).ravel(), 1.0 / _RPM_MILLI_TO_RAD_S)


def rpm_milli_s_to_rad_s2(values) -> np.ndarray:
    """Joint acceleration limits 0.001 RPM/s → rad/s² (100000 → 600 °/s²)."""
    return np.asarray(values, dtype=float) * _RPM_MILLI_TO_RAD_S


def rad_s2_to_rpm_milli_s(values) -> list[int]:
    """Joint acceleration limits rad/s² → 0.001 RPM/s (ints)."""
    return _ints(np.asarray(values, dtype=float).ravel(), 1.0 / _RPM_MILLI_TO_RAD_S)


def rad_s_to_centideg_s(values) -> list[int]:
    """Joint velocity rad/s → the UDP push ``joint_speed`` integer.

    The docs disagree on its unit (0.01 RPM / 0.02 RPM, §1.1); SDK 1.1.6 divides by 100 and documents
    the result as °/s, so the simulator sends 0.01 °/s and the SDK shows °/s."""
    return _ints(np.asarray(values, dtype=float).ravel(), 18_000.0 / math.pi)


# -------------------------------------------------------------------------------------- error codes
ERR_OK = 0x0000
ERR_JOINT_COMM = 0x1001
ERR_JOINT_LIMIT = 0x1002
ERR_UNREACHABLE = 0x1003
ERR_PLANNER = 0x1006
ERR_OVERSPEED = 0x1007
ERR_SPEED_LIMIT = 0x1009
ERR_ACC_LIMIT = 0x100A
ERR_JOINT_DISABLED = 0x1010

#: System error codes of ``err[]`` (arm state, UDP push), RealMan JSON protocol error list (§1.9).
SYSTEM_ERRORS: dict[int, str] = {
    0x0000: "normal",
    0x1001: "joint communication error (severe)",
    0x1002: "target angle beyond the joint limit",
    0x1003: "target unreachable (singularity or outside the workspace)",
    0x1004: "real-time kernel communication error (severe; hardware/software mismatch)",
    0x1005: "joint bus error (severe)",
    0x1006: "planning-layer kernel error (severe)",
    0x1007: "joint overspeed (typical in pass-through: slow down the stream)",
    0x1008: "end interface board unreachable",
    0x1009: "speed limit exceeded (pass-through)",
    0x100A: "acceleration limit exceeded (pass-through)",
    0x100B: "joint brake not released",
    0x100C: "overspeed during drag teaching",
    0x100D: "collision detected",
    0x100E: "no such work frame",
    0x100F: "no such tool frame",
    0x1010: "joint disabled",
    0x1011: "arc planning error",
    0x1012: "self-collision",
    0x1013: "electronic fence collision",
    0x1014: "joint soft limit exceeded",
    0x2001: "gripper fault",
    0x2002: "dexterous hand fault",
    0x2003: "six-axis force sensor fault",
    0x2004: "one-axis force sensor fault",
    0x2005: "end output current fault",
    0x5001: "reserved",
    0x5002: "reserved",
    0x5003: "controller over-temperature",
    0x5004: "reserved",
    0x5005: "controller over-current",
    0x5006: "controller under-current",
    0x5007: "controller over-voltage",
    0x5008: "controller under-voltage",
    0x5009: "real-time kernel communication error",
}

#: ``joint_err_code`` bit flags (§1.9). 0xF000 (frame loss) is listed by RealMan as a value, not a bit.
JOINT_ERROR_BITS: dict[int, str] = {
    0x0001: "FOC error",
    0x0002: "over-voltage",
    0x0004: "under-voltage",
    0x0008: "over-temperature",
    0x0010: "start failure",
    0x0020: "encoder error",
    0x0040: "over-current",
    0x0080: "software error",
    0x0100: "temperature sensor error",
    0x0200: "position limit exceeded",
    0x0400: "illegal joint ID",
    0x0800: "position tracking error",
    0x1000: "current sensing error",
    0x2000: "brake release failure",
    0x4000: "position-command step warning",
    0x8000: "multi-turn count lost",
}


def error_meaning(code: int) -> str:
    """Meaning of one system error code (``"unknown controller error"`` if not in the table)."""
    return SYSTEM_ERRORS.get(int(code), "unknown controller error")


def joint_error_flags(code: int) -> list[str]:
    """Meanings of the bits set in one ``joint_err_code`` value."""
    code = int(code)
    if code == 0xF000:
        return ["communication frame loss"]
    return [text for bit, text in JOINT_ERROR_BITS.items() if code & bit]


# ------------------------------------------------------------------------------------- status names
#: ``arm_current_status`` strings of the UDP push, in SDK enum order (``rm_udp_arm_current_status_e``).
ARM_STATUS_NAMES: tuple[str, ...] = (
    "idle", "move_L", "move_J", "move_C", "move_S", "move_through_joint", "move_through_pose",
    "move_through_force_pose", "move_through_current", "stop", "slow_stop", "pause", "current_drag",
    "sensor_drag", "tech_demonstration", "trajectory_reproducton", "move_init_position", "movev_canfd",
)


def arm_status_index(name: str) -> int:
    """SDK enum value of an ``arm_current_status`` string (ValueError if unknown)."""
    return ARM_STATUS_NAMES.index(name)


#: ``type`` values of the ``get_arm_current_trajectory`` reply.
TRAJECTORY_TYPES = ("none", "movej", "movel", "moves", "movec", "re_trajectory", "blend")

DEVICE_ARM = 0       # current_trajectory_state.device: arm joints
DEVICE_GRIPPER = 1   # gripper


# ---------------------------------------------------------------------------------- reply builders
def flag_reply(command: str, field: str, ok: bool) -> dict:
    """``{"command": command, field: true|false}`` — the shape of set_* acknowledgements."""
    return {"command": command, field: bool(ok)}


def receive_state_reply(command: str, ok: bool) -> dict:
    """Immediate reply to movej / movel / movej_p: ``{"command":…, "receive_state": bool}``."""
    return {"command": command, "receive_state": bool(ok)}


def trajectory_state_event(ok: bool, device: int = DEVICE_ARM, trajectory_connect: int = 0) -> dict:
    """Unsolicited completion message of a planned move (``device`` 0) or a gripper action (1).

    SDK 1.1.6 needs ``trajectory_connect`` present (−3 without it)."""
    return {"state": "current_trajectory_state", "trajectory_state": bool(ok), "device": int(device),
            "trajectory_connect": int(trajectory_connect)}


def arm_state_reply(joint_md: Sequence[int], pose_wire: Sequence[int], err: Sequence[int]) -> dict:
    """``get_current_arm_state`` reply; ``err`` must be a non-empty array (``[0]`` when fine)."""
    return {"state": "current_arm_state",
            "arm_state": {"joint": list(joint_md), "pose": list(pose_wire), "err": list(err) or [0]}}


def joint_degree_reply(joint_md: Sequence[int]) -> dict:
    return {"state": "joint_degree", "joint": list(joint_md)}


def current_trajectory_reply(kind: str, data: Sequence[int]) -> dict:
    """``get_arm_current_trajectory`` reply: joints (0.001°) for none/movej, a pose for Cartesian types."""
    return {"state": "arm_current_trajectory", "type": kind, "data": list(data)}


def realtime_push_reply(command: str, cycle: int, enable: bool, port: int, ip: str,
                        custom: dict | None = None, force_coordinate: int = -1) -> dict:
    """``get_realtime_push`` reply (the SDK binds UDP ``0.0.0.0:port`` from it)."""
    c = {"joint_speed": True, "lift_state": False, "expand_state": False, "arm_current_status": True,
         "aloha_state": False}
    if custom:
        c.update(custom)
    return {"command": command, "cycle": int(cycle), "enable": bool(enable), "port": int(port), "ip": str(ip),
            "force_coordinate": int(force_coordinate), "custom": c}


def software_info_reply(product: str, gen: int) -> dict:
    """``get_arm_software_info`` reply in the Gen-3 or Gen-4 form (§1.2)."""
    if gen >= 4:
        return {"Product_version": product, "algorithm_info": {"version": "1.5.5-sim"},
                "command": "arm_software_info",
                "communication_info": {"build_time": "2025-06-23 14:14:59", "version": "V1.0.4.sim"},
                "ctrl_info": {"build_time": "2025-06-23 14:14:59", "version": "V1.0.4.sim"},
                "program_info": {"build_time": "2025-06-23 14:14:59", "version": "V1.0.4.sim"},
                "robot_controller_version": "4.0"}
    return {"Product_version": product, "algorithm_info": {"version": "1.4.4"}, "command": "arm_software_info",
            "ctrl_info": {"build_time": "2024/08/28 18:36:18", "commit_id": "kbsim", "version": "V1.6.1"},
            "dynamic_info": {"model_version": "2"},
            "plan_info": {"build_time": "2024/08/28 18:36:33", "commit_id": "kbsim", "version": "V1.6.1"}}


def dh_reply(d7_m: float) -> dict:
    """``get_DH_data`` reply: RM75 modified DH rows ``[alpha 0.001°, a µm, d µm, offset 0.001°]`` (§3.1)."""
    alpha = [0, -90_000, 90_000, -90_000, 90_000, -90_000, 90_000]
    d = [240_500, 0, 256_000, 0, 210_000, 0, wire_int(d7_m * 1e6)]
    out: dict[str, Any] = {"command": "get_DH_data"}
    for i in range(7):
        out[f"joint_{i + 1}"] = [alpha[i], 0, d[i], 0]
    return out


#: ``state`` of the simulator's answer to a message it could not parse (see :func:`error_reply`).
JSON_ERROR_STATE = "json_error"


def error_reply(reason: str, command: str | None = None) -> dict:
    """Answer to a message that cannot be executed at all (simulator choice; RealMan documents none).

    * malformed JSON, non-object JSON, an over-long line, or an object without a string
      ``"command"``: ``{"state": "json_error", "error": reason}`` — no SDK function waits for that
      key, so an SDK call never mistakes it for its reply;
    * an unknown command: ``{"command": <the request's name>, "error": "unknown command"}`` — an SDK
      call whose reply key equals the request name fails fast with −3 instead of a −2 timeout.

    Known commands with missing or mistyped fields are *not* answered with this: they get their normal
    reply with the success flag ``false`` (what RealMan documents for parameter errors: "控制器返回
    false，传递参数错误", SDK return code 1).
    """
    if command is None:
        return {"state": JSON_ERROR_STATE, "error": str(reason)}
    return {"command": str(command), "error": str(reason)}
