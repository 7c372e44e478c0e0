"""Every message on kinebridge's bus, in one place: topics, their typed bodies, who may publish them.

A message on the wire is ``[topic, msgpack header, *array frames]`` (:mod:`kinebridge.runtime.bus.codec`).
The header holds the bus stamp — ``v`` (this schema's version), ``seq``, ``stamp_ns``
(CLOCK_MONOTONIC), ``src`` (the publishing node) and ``derived`` (the :class:`Stamp` of every message
it was computed from) — and the fields of the topic's body. Each topic is registered here with

* a :class:`Body` — a strict pydantic model of the header fields (no silent casts: a string where a
  number belongs, a bool where a count belongs, NaN where a time belongs are refused) and the
  :class:`ArraySpec` of every array it carries (exact dtype — joint arrays float64 only —, shape,
  a size cap);
* the node kinds that may publish it (``publishers``);
* a description, which the recorder stores with the schema, so a recording says what it holds.

Nodes build messages as bodies (``pub.send(Chunk(t0=..., dt=...), {"q": q})``) and receive them
validated (``msg.body.t0``); a message that fails is a :class:`MessageError` naming the topic, the
field and what was expected — the subscriber counts and drops it, it never reaches a node's logic.
A header of another schema version is refused with both versions named.

Topic names on the wire default to the registered names; ``[bus.topics]`` in the runtime config
renames them (e.g. ``chunk = "arm1/chunk"``) for publishers and subscribers alike (:class:`TopicNames`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from typing_extensions import TypedDict

from kinebridge.runtime.bus.codec import Message, MessageError

__all__ = ["SCHEMA_VERSION", "RESERVED", "Stamp", "ArraySpec", "Body", "TopicSpec", "TOPICS", "TopicNames",
           "spec_of", "body_of", "validate", "json_schema", "Task", "Chunk", "ControlState", "ControlTiming",
           "ChunkLatency", "ChunkReject", "ArmLimitsMsg", "ControlCommand", "PlanMsg", "TaskDone", "TaskError", "Heartbeat", "EStop",
           "FrameRef", "CameraColor", "CameraDepth", "WorldTruth", "TruthRequest", "Keypoints", "Instruction",
           "Decision", "BridgeError", "SubtaskReport", "Tokens", "MAX_CHUNK_ROWS", "ANY", "INGRESS_TOPICS"]

SCHEMA_VERSION = 1
RESERVED = ("v", "seq", "stamp_ns", "src", "derived", "replayed")   # stamped by the bus, never part of a body
ANY = "*"                      # publishers: any node kind, the supervisor and the ingress
MAX_CHUNK_ROWS = 20_000        # 100 s at 200 Hz: longer joint chunks are refused (a size cap, not a plan limit)
JOINTS = 7


class Stamp(BaseModel):
    """Where a message came from: publisher, topic, its per-topic sequence number, CLOCK_MONOTONIC ns."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    src: str
    topic: str
    seq: int = Field(ge=0)
    stamp_ns: int

    def wire(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ArraySpec:
    """An array a body carries: exact ``dtype``, ``shape`` (None = any length on that axis), at most
    ``max_rows`` along axis 0 and at least ``min_rows``."""

    dtype: str
    shape: tuple
    max_rows: int | None = None
    min_rows: int = 0
    description: str = ""

    def check(self, topic: str, name: str, a) -> np.ndarray:
        if not isinstance(a, np.ndarray):
            raise MessageError(f"{topic!r}: array {name!r} missing or not an array")
        want = np.dtype(self.dtype)
        if a.dtype != want:
            raise MessageError(f"{topic!r}: array {name!r} has dtype {a.dtype}, expected {want} (no casts: send "
                               f"{want} — an integer or float16 array would be executed as something else)")
        if a.ndim != len(self.shape) or any(s is not None and s != n for s, n in zip(self.shape, a.shape)):
            want_s = "(" + ", ".join("N" if s is None else str(s) for s in self.shape) + ")"
            raise MessageError(f"{topic!r}: array {name!r} has shape {a.shape}, expected {want_s}")
        if a.ndim and (a.shape[0] < self.min_rows or (self.max_rows is not None and a.shape[0] > self.max_rows)):
            raise MessageError(f"{topic!r}: array {name!r} has {a.shape[0]} rows, expected "
                               f"{self.min_rows}..{self.max_rows if self.max_rows is not None else '∞'}")
        return a

    def json_schema(self) -> dict:
        return {"type": "object", "description": self.description or f"{self.dtype} array",
                "x-dtype": self.dtype, "x-shape": [s if s is not None else -1 for s in self.shape]}


class Body(BaseModel):
    """Header fields of one topic's messages (strict: no casts, no unknown fields, finite floats).
    ``ARRAYS``: the arrays it carries (None: any, unchecked — only for test topics)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)
    ARRAYS: ClassVar[dict[str, ArraySpec] | None] = {}
    TOPIC: ClassVar[str] = ""
    #: the recorded schema's name when it is not ``kinebridge.<topic>`` (e.g. ``foxglove.CompressedImage``:
    #: a body whose fields are a Foxglove schema's, so Foxglove shows the recorded messages)
    SCHEMA_NAME: ClassVar[str | None] = None

    def header(self) -> dict:
        """The body as plain header values (fields only; the bus adds its stamp). Bodies hold plain
        values only (numbers, strings, lists, maps), so this is a copy of the fields."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    body: type[Body]
    publishers: frozenset[str]
    description: str

    def may_publish(self, kind: str) -> bool:
        return ANY in self.publishers or kind in self.publishers


TOPICS: dict[str, TopicSpec] = {}


def topic(name: str, *, publishers, description: str):
    """Register ``cls`` as the body of ``name``, published by the node kinds ``publishers``."""
    def deco(cls: type[Body]) -> type[Body]:
        if name in TOPICS:
            raise RuntimeError(f"topic {name!r} registered twice")
        clash = set(cls.model_fields) & set(RESERVED)
        if clash:
            raise RuntimeError(f"{cls.__name__}: fields {sorted(clash)} are stamped by the bus")
        cls.TOPIC = name
        TOPICS[name] = TopicSpec(name, cls, frozenset(publishers), description)
        return cls
    return deco


def spec_of(name: str) -> TopicSpec:
    try:
        return TOPICS[name]
    except KeyError:
        raise MessageError(f"unknown topic {name!r}; the bus carries {sorted(TOPICS)}") from None


def body_of(name: str) -> type[Body]:
    return spec_of(name).body


def _error(topic: str, exc: ValidationError) -> MessageError:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(p) for p in e["loc"]) or "(body)"
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{loc}: {msg} (got {e['input']!r})" if e["type"] != "missing" else f"{loc}: missing")
    return MessageError(f"{topic!r}: " + "; ".join(parts))


def validate(msg: Message) -> Message:
    """Check ``msg`` against its topic's schema; fills ``msg.body``, ``msg.stamp``, ``msg.derived``.

    Raises :class:`MessageError` naming what is wrong (unknown topic, another schema version, a bad
    stamp, a body field, an array)."""
    spec = spec_of(msg.topic)
    h = msg.header
    v = h.get("v")
    if v != SCHEMA_VERSION:
        raise MessageError(f"{msg.topic!r} from {h.get('src')!r}: schema version {v!r}, this kinebridge speaks "
                           f"{SCHEMA_VERSION}; run the same kinebridge version on both ends")
    seq, stamp_ns, src = h.get("seq"), h.get("stamp_ns"), h.get("src")
    if type(seq) is not int or seq < 0 or type(stamp_ns) is not int or type(src) is not str:
        raise MessageError(f"{msg.topic!r}: header lacks a valid bus stamp (seq ≥ 0, stamp_ns, src)")
    if "replayed" in h and type(h["replayed"]) is not bool:
        raise MessageError(f"{msg.topic!r}: 'replayed' must be true or false")
    derived = h.get("derived")
    if derived is None:
        derived = []
    elif type(derived) is not list or len(derived) > 16:
        raise MessageError(f"{msg.topic!r}: 'derived' must be a list of at most 16 stamps")
    try:
        msg.derived = [Stamp.model_validate(d) for d in derived]
        msg.body = spec.body.model_validate({k: x for k, x in h.items() if k not in RESERVED})
    except ValidationError as exc:
        raise _error(msg.topic, exc) from None
    arrays = msg.arrays
    want = spec.body.ARRAYS
    if want is None:            # a body with free-form arrays (the codec has checked their frames)
        want = {}
        arrays = {}
    if arrays.keys() != want.keys():
        extra, missing = sorted(arrays.keys() - want.keys()), sorted(want.keys() - arrays.keys())
        raise MessageError(f"{msg.topic!r}: arrays {sorted(arrays)} — "
                           + (f"missing {missing} " if missing else "") + (f"unexpected {extra}" if extra else ""))
    for name, a_spec in want.items():
        a_spec.check(msg.topic, name, arrays[name])
    msg.stamp = Stamp(src=src, topic=msg.topic, seq=seq, stamp_ns=stamp_ns)
    return msg


def json_schema(name: str) -> dict:
    """JSON schema of a topic's messages as recorded (bus stamp, body fields, arrays by name)."""
    spec = spec_of(name)
    s = spec.body.model_json_schema()
    props = {"v": {"type": "integer", "const": SCHEMA_VERSION}, "seq": {"type": "integer"},
             "stamp_ns": {"type": "integer", "description": "CLOCK_MONOTONIC ns at publication"},
             "src": {"type": "string"}, "derived": {"type": "array", "items": Stamp.model_json_schema()},
             **s.get("properties", {})}
    for a, a_spec in (spec.body.ARRAYS or {}).items():
        props[a] = a_spec.json_schema()
    out = {"title": name, "description": spec.description, "type": "object", "properties": props,
           "x-publishers": sorted(spec.publishers)}
    if "$defs" in s:
        out["$defs"] = s["$defs"]
    return out


class TopicNames:
    """Registered topic name ↔ name on the wire (``[bus.topics]`` renames; default: the same)."""

    def __init__(self, overrides: dict[str, str] | None = None):
        self._over = dict(overrides or {})
        for k, w in self._over.items():
            spec_of(k)
            if not isinstance(w, str) or not w or len(w) > 200:
                raise MessageError(f"bus.topics.{k}: expected a non-empty topic name, got {w!r}")
            if w != k and w in TOPICS and w not in self._over:
                raise MessageError(f"bus.topics.{k}: {w!r} is the name of another topic")
        seen: dict[str, str] = {}
        for k, w in self._over.items():
            if w in seen:
                raise MessageError(f"bus.topics: {k!r} and {seen[w]!r} would both travel as {w!r}")
            seen[w] = k
        self._logical = {w: k for k, w in self._over.items()}

    def wire(self, name: str) -> str:
        """The name ``name`` travels as (ValueError-like MessageError for an unregistered topic)."""
        w = self._over.get(name)
        if w is not None:
            return w
        spec_of(name)
        return name

    def logical(self, wire: str) -> str | None:
        """The registered topic a wire name carries, None for a name no topic travels as."""
        k = self._logical.get(wire)
        if k is not None:
            return k
        return wire if wire in TOPICS and wire not in self._over else None


DEFAULT_NAMES = TopicNames()

# ====================================================================================== the topics
_CONTROL = ("control",)
_PRODUCERS = ("trajectory", "decoder", "ingress", "replay")
_TASKERS = ("supervisor", "ingress", "bridge", "planner", "replay")


_POSE7 = Field(None, min_length=7, max_length=7, description="[x, y, z, qw, qx, qy, qz] (m), arm base frame")


@topic("task", publishers=_TASKERS,
       description="a task for the trajectory node: a skill and its task frames or task parameters")
class Task(Body):
    skill: str | None = Field(None, min_length=1, max_length=100,
                              description="skill name (default: trajectory.skill)")
    goal: list[float] | None = _POSE7
    start: list[float] | None = _POSE7
    params: dict[str, list[float] | float | str] | None = Field(
        None, description="skill-specific task parameters, e.g. pour: {'cup': [x, y, z, yaw_deg]}")
    task_id: str | None = Field(None, max_length=100, description="the producer's id for this task")


@topic("chunk", publishers=_PRODUCERS, description="timestamped joint positions for the control loop")
class Chunk(Body):
    t0: float = Field(description="time of q[0], CLOCK_MONOTONIC s on the control node's clock")
    dt: float = Field(gt=0.0, le=1.0, description="sample period (s)")
    ARRAYS: ClassVar = {"q": ArraySpec("float64", (None, JOINTS), max_rows=MAX_CHUNK_ROWS, min_rows=1,
                                       description="joint positions (rad), one row per sample")}


@topic("control/state", publishers=_CONTROL, description="the setpoint sent and the measured joints, per tick")
class ControlState(Body):
    t: float
    tick: int = Field(ge=0)
    sent: bool
    starved: int = Field(ge=0)
    held: int = Field(ge=0)
    at_rest: bool
    latched: str | None = Field(None, description="why the loop holds and refuses chunks (e-stop, hold), if it does")
    ARRAYS: ClassVar = {"q_cmd": ArraySpec("float64", (JOINTS,), description="setpoint sent (rad)"),
                        "q": ArraySpec("float64", (JOINTS,), description="measured joints (rad)")}


@topic("control/command", publishers=("supervisor",),
       description="an operator's command to the control node: hold (decelerate and hold) or clear (resume)")
class ControlCommand(Body):
    action: Literal["hold", "clear"]
    reason: str = Field("operator", max_length=500)


@topic("control/timing", publishers=_CONTROL, description="batches of loop wake-up lateness and tick work")
class ControlTiming(Body):
    final: bool
    ticks: int = Field(ge=0)
    sent: int = Field(ge=0)
    starved_ticks: int = Field(ge=0)
    held_ticks: int = Field(ge=0)
    chunks_accepted: int = Field(ge=0)
    chunks_rejected: int = Field(ge=0)
    chunks_superseded: int = Field(0, ge=0)
    late_ticks: int = Field(0, ge=0, description="ticks decelerating on a late arm state (not yet a lost link)")
    links_lost: int = Field(0, ge=0)
    reconnects: int = Field(0, ge=0)
    workspace_violations: int = Field(ge=0)
    setpoints_rejected: int = Field(ge=0)
    overruns: int = Field(ge=0)
    rate_hz: float
    chunk_latency_ns: list[int] = Field(default_factory=list, max_length=256)
    ARRAYS: ClassVar = {"lateness_ns": ArraySpec("int64", (None,), max_rows=10_000),
                        "tick_ns": ArraySpec("int64", (None,), max_rows=10_000)}


@topic("control/chunk_latency", publishers=_CONTROL, description="chunk stamp → first setpoint sent from it")
class ChunkLatency(Body):
    latency_ns: int
    waiting_ns: int
    tick_work_ns: int


@topic("control/reject", publishers=_CONTROL, description="a chunk the control node refused, with the reason")
class ChunkReject(Body):
    reason: str = Field(max_length=2000)


@topic("control/limits", publishers=_CONTROL,
       description="the joint limits the control loop enforces (model ∩ controller report, speed-scaled)")
class ArmLimitsMsg(Body):
    model: str
    d7: float = Field(gt=0.0, lt=0.5)
    speed_fraction: float = Field(gt=0.0, le=1.0)
    ARRAYS: ClassVar = {k: ArraySpec("float64", (JOINTS,)) for k in ("q_min", "q_max", "qd_max", "qdd_max")}


@topic("trajectory/plan", publishers=("trajectory",), description="a whole joint plan and its Cartesian targets")
class PlanMsg(Body):
    kind: str
    t0: float
    dt: float = Field(gt=0.0)
    samples: int = Field(ge=1)
    plan_ms: float
    stages_ms: dict[str, float]
    max_pos_err: float
    max_rot_err: float
    skill: str = ""
    speed: float = 1.0
    task_id: str | None = None
    ARRAYS: ClassVar = {"q": ArraySpec("float64", (None, JOINTS), max_rows=MAX_CHUNK_ROWS * 10),
                        "pose": ArraySpec("float64", (None, 7), max_rows=MAX_CHUNK_ROWS * 10)}


@topic("trajectory/done", publishers=("trajectory",), description="the plan of a task reached its end")
class TaskDone(Body):
    t_end: float
    task_id: str | None = None


@topic("trajectory/error", publishers=("trajectory",), description="a task that cannot be planned, and why")
class TaskError(Body):
    reason: str = Field(max_length=4000)
    task_id: str | None = None


@topic("heartbeat", publishers=(ANY,), description="a node's liveness, status and counters")
class Heartbeat(Body):
    node: str
    kind: str
    pid: int
    status: str
    received: int = Field(ge=0)
    malformed: int = Field(ge=0)
    gaps: int = Field(ge=0)
    last_error: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


@topic("estop", publishers=(ANY,), description="stop the arm now (from the supervisor, an operator, a UI)")
class EStop(Body):
    reason: str = Field(max_length=2000)


# ---------------------------------------------------------------------------- cameras and the world
_CAMERAS = ("camera", "world", "replay")


@topic("camera/frame", publishers=_CAMERAS,
       description="a camera frame in the shared-memory ring (runtime/bus/frames.py): which ring and slot, its "
                   "stamps and shape; the pixels stay in the ring")
class FrameRef(Body):
    camera: str = Field(min_length=1, max_length=100)
    ring: str = Field(min_length=1, max_length=100, description="name of the shared-memory ring")
    generation: int = Field(ge=1, description="the ring's generation (a restarted camera's ring has a new one)")
    slot: int = Field(ge=0)
    frame_seq: int = Field(ge=0, description="frame number in this ring, from 0")
    capture_ns: int = Field(description="CLOCK_MONOTONIC ns at capture (the world's clock for a simulated camera)")
    device_stamp_ns: int | None = Field(None, description="the device's own clock (ns), if it has one")
    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)


class FoxgloveTime(TypedDict):
    sec: int
    nsec: int


_TIME_SCHEMA = {"type": "object", "title": "time", "description": "capture time (Unix epoch)",
                "properties": {"sec": {"type": "integer", "minimum": 0},
                               "nsec": {"type": "integer", "minimum": 0, "maximum": 999_999_999}}}
_FoxTime = Annotated[FoxgloveTime, WithJsonSchema(_TIME_SCHEMA)]
_IMAGE_BYTES = 64 << 20


class _RecordedFrame(Body):
    """Fields of a recorded frame beside its Foxglove schema's: which frame it was and its stamps."""

    timestamp: _FoxTime = Field(description="capture time on the wall clock (Unix epoch)")
    frame_id: str = Field(max_length=100, description="the camera's frame (its name)")
    camera: str = Field(min_length=1, max_length=100)
    frame_seq: int = Field(ge=0)
    capture_ns: int = Field(description="CLOCK_MONOTONIC ns at capture")
    device_stamp_ns: int | None = None


@topic("camera/color", publishers=_CAMERAS,
       description="a recorded colour frame (at [camera] record_hz): foxglove.CompressedImage (JPEG or PNG) with "
                   "the frame's number, stamps and calibration (K row-major, T_base_cam row-major)")
class CameraColor(_RecordedFrame):
    SCHEMA_NAME: ClassVar = "foxglove.CompressedImage"
    format: Literal["jpeg", "png"]
    data: str = Field(max_length=_IMAGE_BYTES, json_schema_extra={"contentEncoding": "base64"},
                      description="the compressed image, base64")
    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)
    K: list[float] = Field(min_length=9, max_length=9, description="intrinsics [fx 0 cx; 0 fy cy; 0 0 1], row-major")
    distortion_model: str = Field("none", max_length=40)
    D: list[float] = Field(default_factory=list, max_length=16, description="distortion coefficients")
    T_base_cam: list[float] | None = Field(None, min_length=16, max_length=16,
                                           description="camera pose in the arm's base frame, 4×4 row-major")


@topic("camera/depth", publishers=_CAMERAS,
       description="a recorded depth frame (at [camera] record_hz): foxglove.RawImage 16UC1, millimetres along the "
                   "optical axis (0 = no depth), aligned to camera/color of the same frame_seq")
class CameraDepth(_RecordedFrame):
    SCHEMA_NAME: ClassVar = "foxglove.RawImage"
    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)
    encoding: Literal["16UC1"] = "16UC1"
    step: int = Field(gt=0, description="bytes per row")
    data: str = Field(max_length=_IMAGE_BYTES, json_schema_extra={"contentEncoding": "base64"},
                      description="little-endian uint16 depth in mm, base64")
    depth_scale: float = Field(0.001, gt=0.0, description="metres per unit of data")


@topic("world/truth", publishers=("world", "replay"),
       description="the simulated world's ground truth: every object's pose and keypoints, the held mug, the "
                   "flange, the arm joints it shows and the pour's counts (base frame, m; poses x y z qw qx qy qz)")
class WorldTruth(Body):
    world_time: float = Field(ge=0.0, description="simulated time since the scene was built (s)")
    clock_ns: int | None = Field(None, description="the world's time on CLOCK_MONOTONIC (ns), once it follows a clock")
    seed: int | None = None
    target: str | None = Field(None, description="the object whose pour is counted in 'pour' (the scene's target "
                                                 "unless a world/truth_request named another)")
    objects: list[dict[str, Any]] = Field(default_factory=list, max_length=64,
                                          description="[{name, kind, class, color, size, position, pose, "
                                                      "keypoints: {K: [x, y, z]}}]")
    held: dict[str, Any] | None = Field(None, description="the held mug: {pose, keypoints, water_inside}")
    flange: list[float] = Field(min_length=7, max_length=7)
    pour: dict[str, Any] | None = Field(None, description="water counts and collisions since the last reset "
                                                          "(in_target, in_source, spilt, in_flight, collisions, success)")
    following: bool = Field(description="joint states are arriving (else the world holds the arm)")
    request_id: str | None = Field(None, max_length=100, description="the world/truth_request this answers")
    ARRAYS: ClassVar = {"q": ArraySpec("float64", (JOINTS,), description="the arm joints the world shows (rad)")}


@topic("world/truth_request", publishers=(ANY,),
       description="ask the world node for world/truth now (reset_pour: start counting a new pour, into target)")
class TruthRequest(Body):
    request_id: str | None = Field(None, max_length=100)
    reset_pour: bool = False
    target: str | None = Field(None, min_length=1, max_length=100,
                               description="with reset_pour: count the new pour into this object (a mug or bowl of "
                                           "the scene; default: the scene's target)")


# ------------------------------------------------------------------------- coming with later issues
from pydantic import field_validator as _field_validator  # noqa: E402 - kept with the body that uses it

_Vec3 = Annotated[list[float], Field(min_length=3, max_length=3)]
_Vec2 = Annotated[list[float], Field(min_length=2, max_length=2)]


class KeypointDetail(BaseModel):
    """How one keypoint of a perceived object was measured (``PerceivedObject.keypoint_detail``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    uv: _Vec2 | None = Field(None, description="pixels in the frame the message derives from")
    z: float | None = Field(None, gt=0.0, description="depth along the camera's optical axis (m)")
    conf: float = Field(ge=0.0, le=1.0)
    visible: bool = False
    status: Literal["ok", "low_confidence", "no_depth", "rejected", "predicted", "out_of_view"]


class PerceivedObject(BaseModel):
    """One object in ``perception/keypoints.objects`` (a plain dict on the wire, checked against this).

    ``id``, ``class`` and ``keypoints`` ({name: [x, y, z]}, base frame, m — only keypoints whose 3D
    position is known: a keypoint without one is absent, never zeros) are required; the rest is
    what a planner reasons about (runtime/perception/candidates.py)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)

    id: str = Field(min_length=1, max_length=64)
    cls: str = Field(alias="class", min_length=1, max_length=40)
    keypoints: dict[str, _Vec3] = Field(max_length=16)
    keypoint_detail: dict[str, KeypointDetail] = Field(default_factory=dict, max_length=16)
    score: float | None = Field(None, ge=0.0, le=1.0)
    status: Literal["ok", "low_confidence", "predicted", "no_keypoints"] = "ok"
    reason: str | None = Field(None, max_length=500)
    source: str | None = Field(None, max_length=200)
    box: Annotated[list[float], Field(min_length=4, max_length=4)] | None = None
    pixel: _Vec2 | None = None
    track: dict[str, int] = Field(default_factory=dict)
    color: str | _Vec3 | None = None
    color_rgb: _Vec3 | None = None
    size: _Vec3 | None = Field(None, description="width, depth, height (m)")
    size_detail: dict[str, float | None] = Field(default_factory=dict)
    position: _Vec3 | None = Field(None, description="centre of its footprint on the table, base frame (m)")
    position_words: dict[str, str | None] = Field(default_factory=dict)
    distance_to_camera_m: float | None = None
    relations: list[str] = Field(default_factory=list, max_length=64)
    handle: str | None = None
    handle_detail: dict[str, float | str] | None = None


@topic("perception/keypoints", publishers=("perception", "world", "replay"),
       description="3D semantic keypoints of the objects in view, as planner candidates (derived: the frame "
                   "they came from)")
class Keypoints(Body):
    camera: str = ""
    objects: list[dict[str, Any]] = Field(default_factory=list, max_length=64,
                                          description="PerceivedObject dicts: id, class, keypoints, …")
    reason: str | None = Field(None, max_length=1000,
                               description="why nothing (or only low-confidence objects) was detected, when so")
    frame_seq: int | None = Field(None, ge=0, description="the camera's frame number")
    capture_ns: int | None = Field(None, description="CLOCK_MONOTONIC ns at capture of that frame")
    width: int | None = Field(None, gt=0, le=8192)
    height: int | None = Field(None, gt=0, le=8192)
    model: str = Field("", max_length=200, description="the keypoint model (file stem @ sha256 prefix)")
    provider: str = Field("", max_length=100, description="the ONNX Runtime execution provider it ran on")
    stages_ms: dict[str, float] = Field(default_factory=dict, description="time per stage of this frame (ms)")

    @_field_validator("objects")
    @classmethod
    def _objects(cls, v):
        for n, o in enumerate(v):
            try:
                PerceivedObject.model_validate(o)
            except ValidationError as exc:
                e = exc.errors()[0]
                raise ValueError(f"objects[{n}].{'.'.join(map(str, e['loc']))}: {e['msg']}") from None
        return v


@topic("planner/instruction", publishers=("supervisor", "ingress"),
       description="what a user asked for, in words, for the decision layer (a reply to its question "
                   "carries the same dialogue_id)")
class Instruction(Body):
    text: str = Field(min_length=1, max_length=4000)
    dialogue_id: str | None = Field(None, min_length=1, max_length=100,
                                    description="groups an instruction with the answers to the planner's questions")


@topic("planner/decision", publishers=("planner", "replay"),
       description="what the decision layer chose: the skill and the target, a question for the user, or why it "
                   "failed (derived: the instruction and the keypoints/frame it was made on)")
class Decision(Body):
    instruction: str = Field(max_length=4000)
    status: Literal["decided", "ask", "failed"]
    skill: str | None = Field(None, max_length=100, description="a skill of the skill library (decided)")
    target: str | None = Field(None, max_length=100, description="the candidate id the skill acts on (decided)")
    question: str | None = Field(None, max_length=4000, description="what to ask the user (ask)")
    reason: str | None = Field(None, max_length=4000, description="why (failed: the error; else the rationale)")
    subtasks: list[dict[str, Any]] = Field(default_factory=list, max_length=32,
                                           description="ordered sub-tasks: skill, target, keypoints named in language")
    planner: str = Field("", max_length=200, description="which planner decided (local, openai:<model>)")
    dialogue_id: str | None = Field(None, max_length=100)
    standard_instruction: str | None = Field(None, max_length=4000,
                                             description="the instruction in standard form (GI)")
    candidates: list[str] = Field(default_factory=list, max_length=64, description="the candidate ids it chose among")
    latency_ms: float | None = Field(None, ge=0.0, description="instruction received → decision (ms)")


@topic("bridge/error", publishers=("bridge",),
       description="a decision the bridge layer could not turn into a task (no task was published), with a code "
                   "and the reason (derived: the decision)")
class BridgeError(Body):
    code: Literal["missing_keypoints", "invalid_keypoints", "stale_keypoints", "no_target", "no_arm_state",
                  "out_of_reach", "unknown_skill", "no_interaction_state", "not_decided"]
    reason: str = Field(max_length=4000)
    target: str | None = Field(None, max_length=100, description="the decision's target")
    skill: str | None = Field(None, max_length=100, description="the decision's skill")
    dialogue_id: str | None = Field(None, max_length=100)


@topic("bridge/subtask", publishers=("bridge",),
       description="how one sub-task of a decision went: started (its task was sent), done, failed (why) or skipped "
                   "(an earlier one failed, or a newer decision superseded it); derived: the decision, and the task "
                   "and its end when there were")
class SubtaskReport(Body):
    index: int = Field(ge=0, le=31, description="the sub-task's place in the decision's subtasks (0 = first)")
    count: int = Field(ge=1, le=32, description="sub-tasks in the decision (a decision without any counts as one)")
    step: int = Field(ge=0, le=31, description="the task it is executed in: consecutive sub-tasks with the same skill "
                                               "and target are phases of one skill motion, one task")
    status: Literal["started", "done", "failed", "skipped"]
    skill: str | None = Field(None, max_length=100, description="the sub-task's skill (the planner's name)")
    target: str | None = Field(None, max_length=100, description="the candidate id it acts on")
    description: str | None = Field(None, max_length=1000, description="the sub-task in words")
    reason: str | None = Field(None, max_length=4000, description="failed / skipped: why")
    task_id: str | None = Field(None, max_length=100, description="the task it was sent as, once it was")
    keypoints_source: str | None = Field(None, max_length=100,
                                         description="where the target's keypoints came from: perception, or "
                                                     "world (the simulated world's ground truth)")
    dialogue_id: str | None = Field(None, max_length=100)


@topic("policy/tokens", publishers=("policy", "ingress", "replay"),
       description="action tokens from a VLA for the decoder, for the observation at obs_ns: one chunk's code "
                   "sequence with its delimiters, in the tokenizer's id space (its manifest's token layout)")
class Tokens(Body):
    obs_ns: int = Field(description="CLOCK_MONOTONIC ns of the observation the tokens were generated for; the "
                                    "decoded chunk starts there (t0), so late tokens are judged stale like any chunk")
    tokenizer: str = Field("", max_length=200,
                           description="the id of the tokenizer the codes belong to (its manifest's id); '' = the "
                                       "decoder's own")
    q_obs: list[float] | None = Field(None, min_length=7, max_length=7,
                                      description="the joints (rad) observed at obs_ns that the chunk is relative to; "
                                                  "None: the decoder takes the commanded joints at obs_ns from "
                                                  "control/state")
    ARRAYS: ClassVar = {"codes": ArraySpec("int32", (None,), max_rows=4096, min_rows=1)}


#: what an outside producer may ever publish through the ingress: kinebridge's own topics whose publishers name
#: the ingress (or any kind) — never a heartbeat, which only a node sends about itself. Fixed here, when the
#: registry holds exactly the topics above, so a topic registered later (a test's, a plug-in's) never changes
#: the ingress default that the supervisor and its node processes must agree on.
INGRESS_TOPICS = tuple(name for name, spec in TOPICS.items()
                       if ("ingress" in spec.publishers or ANY in spec.publishers) and name != Heartbeat.TOPIC)
