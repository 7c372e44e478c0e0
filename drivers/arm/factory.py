"""Build the arm driver the configuration names: ``make_arm(arm_config)``.

Drivers register by name (``[arm] driver``); each takes the arm's :class:`~kinebridge.drivers.arm.model.ArmModel`
(resolved from ``[arm] model`` and ``speed_fraction``) and its own table (``[arm.realman]``). The
control node and the supervisor's safe-stop path both build their driver here, so swapping the
implementation is a configuration change.
"""

from __future__ import annotations

import importlib

from kinebridge.drivers.arm.config import ArmConfig
from kinebridge.drivers.arm.driver import ArmDriver
from kinebridge.drivers.arm.model import ArmModel, arm_model

__all__ = ["ARM_DRIVERS", "make_arm", "model_of"]

#: driver name → "module:factory(arm_config, model) -> ArmDriver"
ARM_DRIVERS = {"realman": "kinebridge.drivers.realman.arm:RealmanArm.from_config"}


def model_of(cfg: ArmConfig) -> ArmModel:
    """The arm model ``cfg`` names, before any controller report."""
    return arm_model(cfg.model, cfg.speed_fraction)


def make_arm(cfg: ArmConfig, **overrides) -> ArmDriver:
    """A (not yet connected) driver for the arm ``cfg`` describes."""
    try:
        target = ARM_DRIVERS[cfg.driver]
    except KeyError:
        raise ValueError(f"arm.driver: unknown driver {cfg.driver!r}; known: {sorted(ARM_DRIVERS)}") from None
    module, attr = target.split(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj(cfg, model_of(cfg), **overrides)
