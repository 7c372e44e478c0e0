"""The node kinds the supervisor can launch, and its launch policy — in one place.

A ``[nodes.NAME]`` table names a kind (default: the table's name). Each kind says which class runs
it, whether its death stops the arm (``critical``, the default of ``[nodes.NAME] critical``), when it
starts and when it stops:

* start phase 0 — *with the arm*: the control node (it connects to the arm and starts streaming) and
  the recorder (so it records the start); phase 1 — *once the arm streams*: the producers, which
  plan against the arm's state;
* stop phase 0 — the control node first (it decelerates the arm to rest, then stops it); phase 1 the
  producers; phase 2 the recorder, last, so it records everyone's final messages.

Cameras (``camera``) and the simulated world (``world``) start *with the arm*: they do not plan
against the arm's state, their set-up (opening a RealSense, building a MuJoCo world and a GL context)
takes seconds and overlaps the control node's connect, the world shows the arm from the first state
the control node streams, and the producers of phase 1 (perception, the planner) find frames flowing
when they start. They stop with the producers, after the arm is at rest (the world shows it coming to
rest) and before the recorder. Neither is critical: the arm is driven without them.

``kinebridge run`` and ``kinebridge bench runtime`` both start runtimes through
:mod:`kinebridge.runtime.supervisor.launch`, which follows these phases; the supervisor stops by them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NodeKind", "NODE_KINDS", "START_WITH_ARM", "START_ONCE_STREAMING", "kind_of"]

START_WITH_ARM, START_ONCE_STREAMING = 0, 1


@dataclass(frozen=True)
class NodeKind:
    name: str
    target: str               # "module:Class" of the node
    critical: bool            # default for [nodes.NAME] critical: its death stops the arm and the runtime
    start_phase: int          # START_WITH_ARM or START_ONCE_STREAMING
    stop_phase: int           # 0 first … 2 last
    description: str


NODE_KINDS: dict[str, NodeKind] = {k.name: k for k in (
    NodeKind("control", "kinebridge.runtime.control.node:ControlNode", True, START_WITH_ARM, 0,
             "owns the arm: the fixed-rate loop streaming validated setpoints"),
    NodeKind("trajectory", "kinebridge.runtime.trajectory.node:TrajectoryNode", False, START_ONCE_STREAMING, 1,
             "skills generalised with LFE-KMP → IK → timestamped joint chunks"),
    NodeKind("recorder", "kinebridge.runtime.recording.node:RecorderNode", False, START_WITH_ARM, 2,
             "every topic to MCAP"),
    NodeKind("ingress", "kinebridge.runtime.ingress.node:IngressNode", False, START_WITH_ARM, 1,
             "outside producers in: validated, authorised, rate-limited, re-published"),
    NodeKind("planner", "kinebridge.runtime.planner.node:PlannerNode", False, START_ONCE_STREAMING, 1,
             "the decision layer: instruction + candidates → skill and target, or a question (async, [planner])"),
    NodeKind("camera", "kinebridge.runtime.camera.node:CameraNode", False, START_WITH_ARM, 1,
             "a camera ([camera]): frames into a shared-memory ring, camera/frame, recorded frames"),
    NodeKind("world", "kinebridge.runtime.world.node:WorldNode", False, START_WITH_ARM, 1,
             "the simulated MuJoCo world ([world]) following control/state, its synthetic cameras, world/truth"),
    NodeKind("perception", "kinebridge.runtime.perception.node:PerceptionNode", False, START_ONCE_STREAMING, 1,
             "camera frames → keypoint model (ONNX) → tracked 3D keypoints as planner candidates ([perception])"),
    NodeKind("bridge", "kinebridge.runtime.bridge.node:BridgeNode", False, START_ONCE_STREAMING, 1,
             "the bridge layer: planner/decision + the target's keypoints → a validated task ([bridge])"),
    NodeKind("decoder", "kinebridge.runtime.policy.node:DecoderNode", False, START_ONCE_STREAMING, 1,
             "VLA action tokens → validated, anchored, timestamped joint chunks (policy/tokens → chunk; [policy])"),
    NodeKind("policy", "kinebridge.runtime.policy.node:PolicyNode", False, START_ONCE_STREAMING, 1,
             "a VLA's stand-in: [policy] producer = replay-tokens streams a data set's tokens (policy/tokens)"),
)}


def kind_of(name: str) -> NodeKind:
    try:
        return NODE_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown node kind {name!r}; known kinds: {sorted(NODE_KINDS)}") from None
