"""The runtime configuration: one TOML file, validated before any process starts.

Every table is a pydantic model with ``extra="forbid"``: an unknown key, a wrong type or an
out-of-range value is refused with the path of the field (``control.rate_hz``) and what is allowed.
The embedded default (:data:`DEFAULT_TOML`) is what ``kinebridge run`` uses without ``--config``:
the simulated RealMan controller, the control node at 200 Hz, the trajectory node with the bundled
pouring skill, and the recorder.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kinebridge.drivers.realman_config import RealmanConfig
from kinebridge.runtime.bus import BusError, check_endpoint, default_ipc_dir, endpoint_is_remote
from kinebridge.runtime.control_config import ControlConfig

__all__ = ["ConfigError", "RuntimeConfig", "NodeSpec", "load_config", "parse_config", "DEFAULT_TOML",
           "NODE_KINDS"]

# node kind → "module:class"; a node's kind defaults to its table name
NODE_KINDS = {
    "control": "kinebridge.runtime.control_node:ControlNode",
    "trajectory": "kinebridge.runtime.trajectory_node:TrajectoryNode",
    "recorder": "kinebridge.runtime.recorder_node:RecorderNode",
}


class ConfigError(ValueError):
    """A runtime configuration that cannot be used; the text names each bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BusConfig(_Strict):
    ipc_dir: str = Field(default_factory=default_ipc_dir, description="directory of the ipc:// sockets")
    curve_keys: str | None = Field(None, description="CurveZMQ key directory; required for tcp endpoints "
                                                     "off loopback (`kinebridge keys`)")
    sndhwm: int = Field(1000, ge=1, le=1_000_000)
    rcvhwm: int = Field(1000, ge=1, le=1_000_000)


class ArmSection(_Strict):
    simulate: bool = Field(True, description="start kinebridge's simulated RealMan controller and connect to it")
    sim_model: Literal["RM75-B", "RM75-6F"] = "RM75-B"
    sim_initial_deg: list[float] | None = Field(None, description="joints the simulated arm starts at (7 values, °)")
    realman: RealmanConfig = Field(default_factory=RealmanConfig)


class RealtimeSection(_Strict):
    priority: int = Field(80, ge=0, le=99, description="SCHED_FIFO priority of the control loop (0 = normal)")
    cpus: list[int] = Field(default_factory=list, description="CPUs to pin the control process to ([] = any)")
    lock_memory: bool = True
    pm_qos: bool = Field(True, description="hold /dev/cpu_dma_latency at 0 µs while the control node runs, so idle "
                                          "CPUs wake fast (root; system-wide, costs idle power)")


class ControlSection(ControlConfig):
    realtime: RealtimeSection = Field(default_factory=RealtimeSection)
    state_every: int = Field(1, ge=1, le=100, description="publish control/state every N ticks")
    timing_hz: float = Field(5.0, gt=0.0, le=50.0, description="rate of control/timing batches")
    chunk_topic: str = "chunk"


class TrajectorySection(_Strict):
    skill: str = Field("pour", description="a bundled skill name or the path of a skill .npz")
    dt: float = Field(0.01, gt=0.0005, le=0.1, description="joint chunk sample period (s)")
    speed: float = Field(1.0, gt=0.0, le=4.0, description="time scaling of the demonstrated motion")
    chunk_len: int = Field(50, ge=2, le=2000, description="samples per published chunk")
    publish_hz: float = Field(10.0, gt=0.0, le=200.0, description="rate of chunk publication while moving")
    lead_s: float = Field(0.05, ge=0.0, le=1.0, description="how far ahead of now a new plan starts")


class RecorderSection(_Strict):
    directory: str = Field("out/recordings", description="where recordings go (one .mcap per run)")
    flush_every_s: float = Field(0.05, gt=0.0, le=5.0)


class SupervisorSection(_Strict):
    heartbeat_hz: float = Field(10.0, ge=1.0, le=100.0)
    heartbeat_timeout_s: float = Field(1.0, gt=0.05, le=30.0,
                                       description="a node silent this long counts as dead")
    start_timeout_s: float = Field(60.0, gt=0.0, le=600.0, description="time a node has to send its first heartbeat")
    restart_limit: int = Field(5, ge=0, le=1000, description="restarts of a non-critical node before giving up")
    poll_hz: float = Field(50.0, ge=5.0, le=1000.0)


class NodeSpec(_Strict):
    kind: str | None = Field(None, description=f"one of {sorted(NODE_KINDS)}; defaults to the table name")
    critical: bool = Field(False, description="its death stops the arm and the runtime")
    enabled: bool = True
    endpoint: str | None = Field(None, description="where it publishes; default ipc://<bus.ipc_dir>/<name>.sock")


class RuntimeConfig(_Strict):
    bus: BusConfig = Field(default_factory=BusConfig)
    arm: ArmSection = Field(default_factory=ArmSection)
    control: ControlSection = Field(default_factory=ControlSection)
    trajectory: TrajectorySection = Field(default_factory=TrajectorySection)
    recorder: RecorderSection = Field(default_factory=RecorderSection)
    supervisor: SupervisorSection = Field(default_factory=SupervisorSection)
    nodes: dict[str, NodeSpec] = Field(default_factory=dict)

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, nodes):
        for name, spec in nodes.items():
            if not name.isidentifier():
                raise ValueError(f"node name {name!r} must be an identifier (letters, digits, _)")
            kind = spec.kind or name
            if kind not in NODE_KINDS:
                raise ValueError(f"nodes.{name}: unknown kind {kind!r}; known kinds: {sorted(NODE_KINDS)}")
            spec.kind = kind
        return nodes

    @model_validator(mode="after")
    def _endpoints(self):
        q = self.arm.sim_initial_deg
        if q is not None and (len(q) != 7 or any(abs(v) > 360 for v in q)):
            raise ValueError(f"arm.sim_initial_deg: expected 7 joint angles within ±360°, got {q}")
        seen = {}
        for name in [*self.nodes, "supervisor"]:
            ep = self.endpoint(name)
            try:
                check_endpoint(ep, f"nodes.{name}.endpoint")
            except BusError as exc:
                raise ValueError(str(exc)) from None
            if endpoint_is_remote(ep) and not self.bus.curve_keys:
                raise ValueError(f"nodes.{name}.endpoint {ep} is reachable from other machines; set bus.curve_keys "
                                 f"(create keys with `kinebridge keys`) — kinebridge refuses unauthenticated "
                                 f"remote control of an arm")
            if ep in seen:
                raise ValueError(f"nodes.{name}.endpoint {ep} is also used by node {seen[ep]!r}")
            seen[ep] = name
        if sum(1 for s in self.nodes.values() if s.enabled and s.kind == "control") > 1:
            raise ValueError("nodes: only one control node may drive the arm")
        return self

    # ------------------------------------------------------------------------------- helpers
    def endpoint(self, name: str) -> str:
        spec = self.nodes.get(name)
        if spec is not None and spec.endpoint:
            return spec.endpoint
        return f"ipc://{self.bus.ipc_dir}/{name}.sock"

    def enabled_nodes(self) -> list[str]:
        return [n for n, s in self.nodes.items() if s.enabled]

    def endpoints(self, exclude: str | None = None) -> dict[str, str]:
        """endpoint → node name for every enabled node and the supervisor (except ``exclude``)."""
        names = [*self.enabled_nodes(), "supervisor"]
        return {self.endpoint(n): n for n in names if n != exclude}


DEFAULT_TOML = """\
# kinebridge runtime — the embedded default: the simulated RealMan RM75-B, the control node at 200 Hz,
# the trajectory node with the bundled pouring skill, and the recorder.

[arm]
simulate = true            # false: connect to the controller at [arm.realman] ip/port
# the simulated arm starts in a ready pose above the table, tool pointing down (0.36, -0.15, 0.17 m)
sim_initial_deg = [-38.36, 54.94, 34.24, 63.56, -29.45, 69.5, -185.82]

[arm.realman]
ip = "127.0.0.1"           # ignored (replaced by the simulator's address) while simulate = true
link_timeout_periods = 4   # no state push for 4 × 5 ms → link lost: stop streaming

[control]
rate_hz = 200.0
blend_s = 0.1
watchdog_s = 1.5

[control.realtime]         # each is asked for and reported (heartbeat detail); refused ones are skipped
priority = 80              # SCHED_FIFO priority of the loop (root or LimitRTPRIO)
lock_memory = true         # mlockall (root or LimitMEMLOCK)
pm_qos = true              # /dev/cpu_dma_latency = 0 µs while running (root; system-wide)

[trajectory]
skill = "pour"
dt = 0.01
chunk_len = 50

[nodes.control]
critical = true

[nodes.trajectory]
critical = false

[nodes.recorder]
critical = false
"""


def _format(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid runtime configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; `kinebridge run --print-config` shows every key)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(text: str, source: str = "<config>") -> RuntimeConfig:
    """A validated :class:`RuntimeConfig` from TOML text; raises :class:`ConfigError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return RuntimeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None


def load_config(path: str | Path | None) -> RuntimeConfig:
    """The config at ``path``, or the embedded default when ``path`` is None."""
    if path is None:
        return parse_config(DEFAULT_TOML, "embedded default")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file (omit --config for the embedded default)")
    return parse_config(p.read_text(), str(p))
