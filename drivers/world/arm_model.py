"""The RM75 as a MuJoCo kinematic tree, built from the MDH table of :mod:`kinebridge.kernels.rm75`.

One modified-DH step is T_i = Rx(α_{i−1}) · Tx(a_{i−1}) · Rz(θ_i) · Tz(d_i) with a_{i−1} = 0 for
every RM75 joint. Rz(θ_i) and Tz(d_i) commute (same axis), so

    T_i = [Rx(α_{i−1}) · Tz(d_i)] · Rz(θ_i):

body i sits in body i−1 at ``pos = Rx(α_{i−1}) · (0, 0, d_i)``, ``quat = Rx(α_{i−1})``, and carries
a hinge about its own z axis through its origin. Body 7's frame is the flange, exactly
``rm75.fk(q, d7)`` (tests/drivers/world check it to 1e-9 m for both variants).

The geometry is primitive: a capsule from each joint origin to the next (along d_{i+1}), a
cylindrical housing on every joint axis and a base column. Link masses are nominal; the arm is
driven kinematically (see :mod:`kinebridge.drivers.world.world`), with a large armature and
gravity compensation so that within one physics step the contact impulses of water and objects
barely move it — they meet the arm as a moving wall of prescribed velocity.
"""

from __future__ import annotations

import math

import numpy as np

from kinebridge.drivers.world import collision

__all__ = ["ALPHA", "add_rm75", "link_names", "JOINT_NAMES", "FLANGE_SITE", "FLANGE_BODY"]

#: α_{i−1} of the RM75 MDH table (rad), i = 1..7
ALPHA = tuple(math.radians(a) for a in (0.0, -90.0, 90.0, -90.0, 90.0, -90.0, 90.0))
JOINT_NAMES = tuple(f"arm/joint{i}" for i in range(1, 8))
FLANGE_BODY = "arm/link7"
FLANGE_SITE = "arm/flange"
ARMATURE = 10.0     # kg m², see the module docstring


def link_names() -> tuple[str, ...]:
    return ("arm/base",) + tuple(f"arm/link{i}" for i in range(1, 8))


def _rx_quat(a: float) -> list[float]:
    return [math.cos(a / 2), math.sin(a / 2), 0.0, 0.0]


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def add_rm75(spec, arm):
    """Add the arm to ``spec.worldbody``; ``arm`` is an :class:`~kinebridge.drivers.world.spec.ArmSpec`.

    Returns the flange body (body 7), to which tools are attached.
    """
    import mujoco

    from kinebridge.kernels import rm75

    d = (rm75.D1, 0.0, rm75.D3, 0.0, rm75.D5, 0.0, float(arm.d7))
    r = float(arm.link_radius)
    rgba = list(arm.color)
    dark = [0.25, 0.26, 0.28, 1.0]
    coll = collision.bits(collision.ARM)

    base = spec.worldbody.add_body(name="arm/base")
    base.add_geom(name="arm/base_plate", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.075, 0.006, 0],
                  pos=[0, 0, 0.006], rgba=dark, **coll)
    base.add_geom(name="arm/base_column", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[r * 1.15, 0.5 * (d[0] - r), 0],
                  pos=[0, 0, 0.5 * (d[0] - r)], rgba=rgba, **coll)
    parent = base
    for i in range(7):
        alpha = ALPHA[i]
        pos = _rx(alpha) @ np.array([0.0, 0.0, d[i]])
        body = parent.add_body(name=f"arm/link{i + 1}", pos=pos.tolist(), quat=_rx_quat(alpha), gravcomp=1.0)
        if i == 0:      # the arm's tree is driven every step: never let it sleep as an island at rest
            body.sleep = mujoco.mjtSleepPolicy.mjSLEEP_NEVER
        body.add_joint(name=JOINT_NAMES[i], type=mujoco.mjtJoint.mjJNT_HINGE, axis=[0, 0, 1],
                       range=[float(arm.q_min[i]), float(arm.q_max[i])], limited=mujoco.mjtLimited.mjLIMITED_TRUE,
                       armature=ARMATURE, damping=0.0)
        # nominal inertia (kinematic drive: only its order of magnitude matters)
        body.mass = 1.5 if i < 4 else 0.8
        body.inertia = [0.004, 0.004, 0.004]
        body.explicitinertial = True
        # joint housing on the axis
        # (joint 7's housing sits behind the flange face, so tools mount on a clear face)
        body.add_geom(name=f"arm/housing{i + 1}", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[r, r, 0],
                      pos=[0, 0, -(r + 0.012) if i == 6 else 0.0], rgba=dark if i % 2 else rgba, **coll)
        if i < 6 and d[i + 1] > 0.0:
            # capsule from this joint's origin to the next, expressed in this body's frame
            end = _rx(ALPHA[i + 1]) @ np.array([0.0, 0.0, d[i + 1]])
            shrink = (r / np.linalg.norm(end)) * end          # leave the housings visible
            body.add_geom(name=f"arm/segment{i + 1}", type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=[0.8 * r, 0, 0],
                          fromto=np.concatenate([shrink, end - shrink]).tolist(), rgba=rgba, **coll)
        parent = body
    # link 7: the flange disc; its frame is the flange
    flange = parent
    flange.add_geom(name="arm/flange_disc", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.032, 0.006, 0],
                    pos=[0, 0, -0.006], rgba=dark, **coll)
    flange.add_site(name=FLANGE_SITE, pos=[0, 0, 0], size=[0.005, 0, 0], group=5)
    return flange
