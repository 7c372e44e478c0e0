"""Camera node tests render headless: EGL unless the environment chose a back end."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
