"""Compile a :class:`~kinebridge.drivers.world.spec.SceneSpec` into a MuJoCo model (through MjSpec).

What is built: a floor, a table whose top is z = 0 in the arm's base frame, lights, the RM75 of
the spec's variant (:mod:`.arm_model`), its tool and water (:mod:`.tool`), the objects
(:mod:`.objects`) and, optionally, small visual markers at every keypoint.

Solver settings (``PhysicsSpec``), tuned on the 2-core box with a held mug of 120 spheres fed
joint states at 200 Hz, the mug moving (real-time factor = simulated s per wall s):

- timestep 2.5 ms, two steps per 200 Hz state. 5 ms (one step per state) runs twice as fast and
  holds the water at rest, but a pour then splashes and tunnels: 55–73 of 120 spheres spilt
  where 2.5 ms spills 0–2. The water contacts' time constant (10 ms) stays ≥ 2 timesteps, as
  MuJoCo's soft constraints need for stability.
- CG with at most 20 iterations (6 line-search): real-time factor 2–3.5. Newton, which
  factorises the Hessian over all ~400 degrees of freedom the spheres couple, managed 0.9–1.1;
  CG capped at 10 iterations was faster but did not converge the pile, and 51 of 120 spheres
  crept out through the wall while the mug moved.
- pyramidal friction cones; the water is frictionless (condim 1: one row per contact).
- sleeping islands: objects at rest on the table sleep until something touches them (3–4.2
  instead of 2.4–2.8); the arm's tree and the water never sleep.
- ``implicitfast`` integration keeps the drawer's slide damping stable at any mass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kinebridge.drivers.world import arm_model, collision, objects, tool as tool_mod
from kinebridge.drivers.world.spec import RESERVED_LABELS, SceneSpec

__all__ = ["BuiltWorld", "build"]


@dataclass
class BuiltWorld:
    """The compiled model and where everything is in it."""

    scene: SceneSpec
    model: object                                   # mujoco.MjModel
    q0: np.ndarray                                  # initial arm joints (rad)
    labels: tuple[str, ...]                         # segmentation label of each id
    geom_label: np.ndarray                          # (ngeom,) label id of each geom
    arm_qpos: np.ndarray                            # qpos addresses of joints 1..7
    arm_dof: np.ndarray                             # dof addresses of joints 1..7
    flange_site: int
    flange_body: int
    tool: tool_mod.ToolLayout
    tool_body: int                                  # held mug body (or -1)
    keypoint_sites: dict[str, dict[str, int]]       # label → keypoint name → site id
    object_bodies: dict[str, int]                   # object name → its root body id
    particle_bodies: np.ndarray                     # body ids of the water spheres
    particle_geoms: np.ndarray
    drawer_joints: dict[str, int] = field(default_factory=dict)   # object name → qpos address
    initial_qpos: np.ndarray | None = None


def _quat_z(deg: float) -> list[float]:
    return [math.cos(math.radians(deg) / 2), 0.0, 0.0, math.sin(math.radians(deg) / 2)]


def _table(spec, scene: SceneSpec):
    import mujoco

    t = scene.table
    (x0, x1), (y0, y1) = t.x_range, t.y_range
    material = ""
    if t.checker is not None:
        spec.add_texture(name="table_tex", type=mujoco.mjtTexture.mjTEXTURE_2D,
                         builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, rgb1=list(t.color[:3]),
                         rgb2=list(t.checker[:3]), width=64, height=64)
        m = spec.add_material(name="table_mat", texuniform=True,
                              texrepeat=[1.0 / (2 * t.checker_size), 1.0 / (2 * t.checker_size)])
        m.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "table_tex"
        material = "table_mat"
    wb = spec.worldbody
    static = collision.bits(collision.STATIC)
    wb.add_geom(name="floor/plane", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], pos=[0, 0, -t.height],
                rgba=[0.42, 0.43, 0.45, 1], **static)
    wb.add_geom(name="table/top", type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[0.5 * (x1 - x0), 0.5 * (y1 - y0), 0.5 * t.thickness],
                pos=[0.5 * (x0 + x1), 0.5 * (y0 + y1), -0.5 * t.thickness], rgba=list(t.color),
                material=material, **static)
    leg = 0.5 * (t.height - t.thickness)
    for k, (x, y) in enumerate(((x0 + 0.04, y0 + 0.04), (x0 + 0.04, y1 - 0.04), (x1 - 0.04, y0 + 0.04),
                                (x1 - 0.04, y1 - 0.04))):
        wb.add_geom(name=f"table/leg{k}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.025, 0.025, leg],
                    pos=[x, y, -t.thickness - leg], rgba=[0.3, 0.3, 0.3, 1], **static)


def _lights(spec, scene: SceneSpec):
    import mujoco

    L = scene.lighting
    spec.visual.headlight.ambient = list(L.ambient)
    spec.visual.headlight.diffuse = list(L.headlight)
    spec.visual.headlight.specular = [0.05, 0.05, 0.05]
    for k, light in enumerate(L.lights):
        spec.worldbody.add_light(name=f"light{k}", pos=list(light.pos), dir=list(light.dir),
                                 diffuse=list(light.diffuse), specular=list(light.specular),
                                 castshadow=light.castshadow,
                                 type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL if light.directional
                                 else mujoco.mjtLightType.mjLIGHT_SPOT, cutoff=70.0, exponent=1.0)


def build(scene: SceneSpec) -> BuiltWorld:
    """Build and compile ``scene``; the model's initial state has the arm at ``q0`` (the spec's,
    or the carry posture) and the water in the held mug."""
    from kinebridge.drivers.world.gl import load_mujoco
    from kinebridge.kernels import rm75

    mujoco = load_mujoco()
    spec = mujoco.MjSpec()
    spec.modelname = "kinebridge_world"
    spec.compiler.degree = False            # every angle below is in radians (joint ranges!)
    ph = scene.physics
    spec.option.timestep = ph.timestep
    spec.option.solver = getattr(mujoco.mjtSolver, f"mjSOL_{ph.solver.upper()}")
    spec.option.iterations = ph.iterations
    spec.option.ls_iterations = ph.ls_iterations
    spec.option.cone = getattr(mujoco.mjtCone, f"mjCONE_{ph.cone.upper()}")
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    if ph.sleep:
        # objects at rest on the table drop out of collision and solver work until touched;
        # the arm's tree and the water never sleep (see arm_model, tool)
        spec.option.enableflags |= mujoco.mjtEnableBit.mjENBL_SLEEP
        spec.option.sleep_tolerance = ph.sleep_tolerance
    w, h = scene.render_size
    spec.visual.global_.offwidth = int(w)
    spec.visual.global_.offheight = int(h)
    spec.visual.quality.shadowsize = 2048
    spec.visual.quality.offsamples = scene.render_msaa
    spec.visual.quality.numslices = scene.render_slices
    spec.visual.quality.numstacks = max(4, round(scene.render_slices * 5 / 8))
    spec.stat.extent = 2.0
    spec.stat.center = [0.3, 0.0, 0.0]

    _table(spec, scene)
    _lights(spec, scene)
    flange = arm_model.add_rm75(spec, scene.arm)
    layout = tool_mod.add_tool(flange, scene.tool)

    q0 = np.asarray(scene.arm.q0, float) if scene.arm.q0 is not None else tool_mod.carry_posture(scene.arm)
    obj_info = {o.name: objects.add_object(spec.worldbody, o) for o in scene.objects}

    particle_names: list[str] = []
    if scene.tool.kind == "mug" and scene.tool.particles.count:
        rng = np.random.default_rng(0 if scene.seed is None else scene.seed)
        local = tool_mod.particle_lattice(scene.tool, rng)
        T_mug = rm75.fk(q0, float(scene.arm.d7)) @ layout.T_flange_mug
        world = local @ T_mug[:3, :3].T + T_mug[:3, 3]
        if np.any(world[:, 2] < 0.0):
            raise ValueError("arm.q0 puts the held mug into the table; start from a posture with the "
                             "flange higher (or leave q0 unset for the carry posture)")
        particle_names = tool_mod.add_particles(spec.worldbody, scene.tool, world)

    if scene.keypoint_markers:
        for site in list(_all_keypoint_sites(spec)):
            body = site.parent
            body.add_geom(name=f"marker/{site.name}", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.0035, 0, 0],
                          pos=list(site.pos), rgba=[1.0, 0.0, 1.0, 1.0], group=0, **collision.VISUAL)

    model = spec.compile()

    labels = RESERVED_LABELS + tuple(o.name for o in scene.objects)
    index = {name: i for i, name in enumerate(labels)}
    geom_label = np.zeros(model.ngeom, np.int32)
    for g in range(model.ngeom):
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or ""
        geom_label[g] = index.get(name.split("/")[0], 0)

    def jid(name):
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)

    arm_j = [jid(n) for n in arm_model.JOINT_NAMES]
    keypoint_sites: dict[str, dict[str, int]] = {}
    for s in range(model.nsite):
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_SITE, s) or ""
        label, _, kp = name.partition("/")
        if kp.startswith("K_") and label in index:
            keypoint_sites.setdefault(label, {})[kp] = s
    pb = np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) for n in particle_names], np.int32)
    pg = np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, n) for n in particle_names], np.int32)
    drawer_joints = {name: int(model.jnt_qposadr[jid(j)]) for name, info in obj_info.items() for j in info["joints"]}

    built = BuiltWorld(
        scene=scene, model=model, q0=q0, labels=labels, geom_label=geom_label,
        arm_qpos=np.array([model.jnt_qposadr[j] for j in arm_j]), arm_dof=np.array([model.jnt_dofadr[j] for j in arm_j]),
        flange_site=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, arm_model.FLANGE_SITE),
        flange_body=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, arm_model.FLANGE_BODY),
        tool=layout, tool_body=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "tool/mug"),
        keypoint_sites=keypoint_sites,
        object_bodies={o.name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, o.name) for o in scene.objects},
        particle_bodies=pb, particle_geoms=pg, drawer_joints=drawer_joints)
    qpos = model.qpos0.copy()
    qpos[built.arm_qpos] = q0
    for name, adr in drawer_joints.items():
        qpos[adr] = scene.object(name).opening
    built.initial_qpos = qpos
    return built


def _all_keypoint_sites(spec):
    for s in spec.sites:
        label, _, kp = (s.name or "").partition("/")
        if kp.startswith("K_"):
            yield s
