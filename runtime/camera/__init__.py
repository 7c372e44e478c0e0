"""Camera nodes: a camera's frames into a shared-memory ring (:mod:`kinebridge.runtime.bus.frames`),
``camera/frame`` on the bus, frames recorded for Foxglove (``config``: the ``[camera]`` table;
``pump``: one camera → ring → bus; ``node``: the camera node)."""
