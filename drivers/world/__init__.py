"""kinebridge.drivers.world: the simulated world (MuJoCo) the cameras render and pours are scored in.

    from kinebridge.drivers.world import SceneSpec, World, PourMonitor
    world = World(SceneSpec.random(seed=3, ambiguous=True))
    world.follow(q, stamp_s); world.advance_to(stamp_s)        # follow the controller's states
    world.set_arm(q); world.step(2, q_next)                     # or drive it offline

Modules: :mod:`.spec` (the scene as data), :mod:`.builder` (MjSpec model), :mod:`.arm_model`
(RM75 from its MDH table), :mod:`.objects`, :mod:`.tool` (held mug, water, gripper, board),
:mod:`.world`, :mod:`.render` (offscreen RGB-D + segmentation), :mod:`.scoring`,
:mod:`.scripted` (an oracle pour), :mod:`.cli` (``kinebridge world``). Names below import
lazily, so ``import kinebridge.drivers.world`` does not load MuJoCo.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SceneSpec": "spec", "MugSpec": "spec", "BowlSpec": "spec", "PlateSpec": "spec", "BoxSpec": "spec",
    "DrawerSpec": "spec", "DistractorSpec": "spec", "Placement": "spec", "ToolSpec": "spec", "ArmSpec": "spec",
    "ParticleSpec": "spec", "PhysicsSpec": "spec",
    "World": "world", "build": "builder", "BuiltWorld": "builder",
    "Renderer": "render", "RenderError": "render",
    "PourMonitor": "scoring", "PourScore": "scoring", "pour_path": "scripted",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
