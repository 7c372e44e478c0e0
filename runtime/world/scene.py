"""The configured world: the ``[world]`` scene with the configured arm (``[arm] model``), sized for
its cameras, settled."""

from __future__ import annotations

from pathlib import Path

__all__ = ["scene_spec", "build_world"]


def scene_spec(cfg, cameras=()):
    """The :class:`~kinebridge.drivers.world.spec.SceneSpec` of ``cfg.world`` for the arm ``cfg.arm.model``,
    with an offscreen buffer large enough for ``cameras`` (camera config dicts)."""
    from kinebridge.drivers.world.spec import ArmSpec, SceneSpec
    from kinebridge.kernels import rm75

    w = cfg.world
    arm = ArmSpec.from_model(rm75.RM75Model.for_variant(cfg.arm.model))
    if w.scene_file:
        p = Path(w.scene_file)
        try:
            spec = SceneSpec.model_validate_json(p.read_text())
        except FileNotFoundError:
            raise ValueError(f"world.scene_file: {p} does not exist") from None
        except ValueError as exc:
            raise ValueError(f"world.scene_file: {p} is not a valid scene: {exc}") from None
        if abs(spec.arm.d7 - arm.d7) > 1e-6:
            raise ValueError(f"world.scene_file: {p} builds an arm with d7 = {spec.arm.d7 * 1e3:.1f} mm, but "
                             f"[arm] model = {cfg.arm.model} has d7 = {arm.d7 * 1e3:.1f} mm; the world would not "
                             f"show the arm the controller reports")
    else:
        spec = SceneSpec.random(w.seed, n_mugs=w.mugs, n_distractors=w.distractors, ambiguous=w.ambiguous,
                                drawer=w.drawer, arm=arm, particles=w.particles)
    need_w = max([int(c.get("width", 640)) for c in cameras] or [0])
    need_h = max([int(c.get("height", 480)) for c in cameras] or [0])
    bw, bh = spec.render_size
    if need_w > bw or need_h > bh:
        spec = spec.model_copy(update={"render_size": (max(bw, need_w), max(bh, need_h))})
    return spec


def build_world(cfg, cameras=()):
    """The :class:`~kinebridge.drivers.world.world.World` of ``cfg``, its objects and water settled (0.25 s)."""
    from kinebridge.drivers.world.world import World

    world = World(scene_spec(cfg, cameras))
    world.step(100)
    return world
