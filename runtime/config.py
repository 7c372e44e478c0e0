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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kinebridge.drivers.arm.config import ArmConfig
from kinebridge.runtime.bridge.config import BridgeSection
from kinebridge.runtime.bus.sockets import BusError, check_endpoint, default_ipc_dir, endpoint_is_remote
from kinebridge.runtime.camera.config import CameraSection
from kinebridge.runtime.control.config import ControlConfig
from kinebridge.runtime.ingress.config import IngressConfig
from kinebridge.runtime.perception.config import PerceptionSection
from kinebridge.runtime.planner.config import PlannerConfig
from kinebridge.runtime.policy.config import PolicyConfig
from kinebridge.runtime.supervisor.kinds import NODE_KINDS
from kinebridge.runtime.trajectory.config import TrajectorySection
from kinebridge.runtime.world.config import WorldSection

__all__ = ["ConfigError", "RuntimeConfig", "NodeSpec", "load_config", "parse_config", "DEFAULT_TOML",
           "NODE_KINDS"]

#: keys that moved, → where they live now (an old config gets told, not just "unknown key")
MOVED = {
    "control.d7": "arm.model (the flange length follows the arm model)",
    "control.speed_fraction": "arm.speed_fraction (one speed knob for the planner, the loop and the driver)",
    "control.chunk_topic": "bus.topics (e.g. [bus.topics] chunk = \"arm1/chunk\")",
    "arm.sim_model": "arm.model",
    "arm.realman.speed_fraction": "arm.speed_fraction",
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
    max_message_mb: float = Field(16.0, gt=0.0, le=1024.0,
                                  description="the largest message frame a node accepts (MB); a peer sending a "
                                              "larger one is disconnected (images travel through shared memory)")
    topics: dict[str, str] = Field(default_factory=dict,
                                   description="wire names of topics, for publishers and subscribers alike "
                                               "(registered name → name on the wire)")

    @field_validator("topics")
    @classmethod
    def _topics(cls, v):
        from kinebridge.runtime.bus.messages import TopicNames
        from kinebridge.runtime.bus.codec import MessageError
        try:
            TopicNames(v)
        except MessageError as exc:
            raise ValueError(str(exc)) from None
        return v

    def names(self):
        from kinebridge.runtime.bus.messages import TopicNames
        return TopicNames(self.topics)


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


class RecorderSection(_Strict):
    directory: str = Field("out/recordings", description="where recordings go (kinebridge-<start>-<pid>-NNN.mcap)")
    flush_every_s: float = Field(0.25, gt=0.0, le=5.0,
                                 description="a compressed chunk is closed and handed to the OS at most this long "
                                             "after its first message: what a crash may lose (s)")
    rotate_mb: float = Field(512.0, ge=0.0, le=1e6,
                             description="start the next file once one holds this many MB (0: no size limit)")
    rotate_s: float = Field(3600.0, ge=0.0, le=7 * 86400.0,
                            description="start the next file once one has been open this long (s; 0: no limit)")


class SupervisorSection(_Strict):
    heartbeat_hz: float = Field(10.0, ge=1.0, le=100.0)
    heartbeat_timeout_s: float = Field(1.0, gt=0.05, le=30.0,
                                       description="a node silent this long counts as dead")
    start_timeout_s: float = Field(60.0, gt=0.0, le=600.0, description="time a node has to send its first heartbeat")
    restart_limit: int = Field(5, ge=0, le=1000, description="restarts of a non-critical node before giving up")
    poll_hz: float = Field(50.0, ge=5.0, le=1000.0)
    latch_file: str | None = Field(None, description="where an e-stop or a critical node's death is remembered "
                                                      "until `kinebridge clear` — across restarts of the daemon "
                                                      "(default: <bus.ipc_dir>/latched for a real arm, the run "
                                                      "directory for the simulated one; the systemd unit puts it "
                                                      "in its state directory)")


class NodeSpec(_Strict):
    kind: str | None = Field(None, description=f"one of {sorted(NODE_KINDS)}; defaults to the table name")
    critical: bool | None = Field(None, description="its death stops the arm and the runtime (default: the "
                                                    "kind's — only the control node is critical)")
    enabled: bool = True
    endpoint: str | None = Field(None, description="where it publishes; default ipc://<bus.ipc_dir>/<name>.sock")


class RuntimeConfig(_Strict):
    bus: BusConfig = Field(default_factory=BusConfig)
    arm: ArmConfig = Field(default_factory=ArmConfig)
    control: ControlSection = Field(default_factory=ControlSection)
    trajectory: TrajectorySection = Field(default_factory=TrajectorySection)
    recorder: RecorderSection = Field(default_factory=RecorderSection)
    supervisor: SupervisorSection = Field(default_factory=SupervisorSection)
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    camera: CameraSection = Field(default_factory=CameraSection)
    world: WorldSection = Field(default_factory=WorldSection)
    perception: PerceptionSection = Field(default_factory=PerceptionSection)
    bridge: BridgeSection = Field(default_factory=BridgeSection)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
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
            if spec.critical is None:
                spec.critical = NODE_KINDS[kind].critical
        return nodes

    @model_validator(mode="after")
    def _endpoints(self):
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

    @model_validator(mode="after")
    def _cameras(self):
        """Every enabled camera node has a camera; camera names (a camera node's name, a world's
        [world.cameras] keys) are unique, since each names its shared-memory ring."""
        seen: dict[str, str] = {}
        for name, spec in self.nodes.items():
            if not spec.enabled or spec.kind not in ("camera", "world"):
                continue
            if spec.kind == "camera":
                if self.camera.device_for(name) is None:
                    raise ValueError(f"nodes.{name}: a camera node needs a camera: set [camera] device (or "
                                     f"[camera.devices.{name}]), e.g. device = {{ kind = \"realsense\" }}")
                cams = [name]
            else:
                cams = list(self.world.cameras)
            for cam in cams:
                if cam in seen:
                    raise ValueError(f"nodes.{name}: camera {cam!r} is also a camera of node {seen[cam]!r}; "
                                     f"camera names name their shared-memory rings and must be unique")
                seen[cam] = name
        return self

    # ------------------------------------------------------------------------------- helpers
    def endpoint(self, name: str) -> str:
        spec = self.nodes.get(name)
        if spec is not None and spec.endpoint:
            return spec.endpoint
        return f"ipc://{self.bus.ipc_dir}/{name}.sock"

    def ingress_endpoint(self) -> str:
        """Where outside producers connect (the ingress node's PULL socket)."""
        return self.ingress.endpoint or f"ipc://{self.bus.ipc_dir}/ingress-in.sock"

    def rpc_endpoint(self) -> str:
        """Where the supervisor answers operator commands (`kinebridge status|stop|estop|clear`)."""
        return f"ipc://{self.bus.ipc_dir}/supervisor-rpc.sock"

    def latch_path(self) -> Path:
        """The latch file: present while the arm must not move again before `kinebridge clear`."""
        return Path(self.supervisor.latch_file or f"{self.bus.ipc_dir}/latched")

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
model = "RM75-B"           # RM75-B or RM75-6F: kinematics (flange d7) and joint limits for every node
speed_fraction = 1.0       # the one scale on joint speed/acceleration limits (planner, loop, driver)
simulate = true            # false: connect to the controller at [arm.realman] ip/port
# sim_initial_deg: where the simulated arm starts (default: a ready pose above the table, tool down)

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

[nodes.ingress]            # the way in for producers that are not configured nodes (kinebridge task, a VLA server)
critical = false
"""


def _format(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid runtime configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = (f"moved to {MOVED[loc]}" if loc in MOVED else
                   "unknown key (check the spelling; `kinebridge run --print-config` shows every key)")
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


# ------------------------------------------------------------------------------ --print-config
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def _render(model: BaseModel, path: str, out: list[str]) -> None:
    scalars, tables = [], []
    for name, field in type(model).model_fields.items():
        v = getattr(model, name)
        if isinstance(v, BaseModel):
            tables.append((f"{path}.{name}" if path else name, v))
        elif isinstance(v, dict) and v and all(isinstance(x, BaseModel) for x in v.values()):
            tables += [(f"{path}.{name}.{_toml_key(k)}" if path else f"{name}.{_toml_key(k)}", x) for k, x in v.items()]
        else:
            doc = f"  # {field.description}" if field.description else ""
            if v is None:
                scalars.append(f"# {_toml_key(name)} =   (unset){doc}")
            else:
                scalars.append(f"{_toml_key(name)} = {_toml_value(v)}{doc}")
    if path and (scalars or not tables):
        out.append(f"\n[{path}]")
    out.extend(scalars)
    for sub_path, sub in tables:
        _render(sub, sub_path, out)


def render_toml(cfg: RuntimeConfig, header: str = "") -> str:
    """``cfg`` as TOML with every table and key, each with its description (``--print-config``); unset
    optional keys are shown commented out. Parsing the text gives ``cfg`` back."""
    out = [header.rstrip()] if header else []
    _render(cfg, "", out)
    return "\n".join(out).lstrip("\n") + "\n"
