"""OpenGL back ends for offscreen rendering, and importing MuJoCo with clear errors.

``import mujoco`` already loads the GL back end that ``MUJOCO_GL`` names: with
``MUJOCO_GL=osmesa`` and no ``libOSMesa`` it fails inside PyOpenGL with an ``AttributeError``
that says nothing useful. :func:`load_mujoco` turns that, and a missing package, into errors
that name the fix; :func:`gl_context` does the same for starting a context.
"""

from __future__ import annotations

import os
import threading

__all__ = ["RenderError", "load_mujoco", "gl_context", "release_gl_context"]

_BACKENDS = ("egl", "osmesa")
_lock = threading.Lock()
_local = threading.local()       # one context per thread and back end, reused by its renderers

_OSMESA_FIX = "it needs Debian's libOSMesa: apt-get install -y libosmesa6 (or use MUJOCO_GL=egl)"
_EGL_FIX = ("install Mesa's EGL (apt-get install -y libegl1 libgl1-mesa-dri), or render in software with "
            "MUJOCO_GL=osmesa after apt-get install -y libosmesa6")


class RenderError(RuntimeError):
    """No OpenGL back end could be started, or the image does not fit the offscreen buffer."""


def load_mujoco():
    """``mujoco``, or an error naming the package or the back end to install."""
    try:
        import mujoco
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("mujoco"):
            raise ImportError("the simulated world needs MuJoCo: pip install 'kinebridge[world]'") from err
        raise
    except Exception as err:  # noqa: BLE001 - a GL back end failing while mujoco imports it
        gl = os.environ.get("MUJOCO_GL", "")
        fix = _OSMESA_FIX if gl.lower() == "osmesa" else _EGL_FIX
        raise RenderError(f"import mujoco failed loading the MUJOCO_GL={gl or '(default)'} back end "
                          f"({type(err).__name__}: {err}); {fix}") from err
    return mujoco


def _backend(name: str) -> str:
    name = (name or "auto").lower()
    if name == "auto":
        env = os.environ.get("MUJOCO_GL", "").lower()
        return env if env in _BACKENDS else "egl"
    if name not in _BACKENDS:
        raise ValueError(f"backend: expected 'auto', 'egl' or 'osmesa', got {name!r}")
    return name


def release_gl_context() -> None:
    """Free this thread's cached contexts (a capture thread calls it on its way out)."""
    for name in _BACKENDS:
        ctx = getattr(_local, name, None)
        if ctx is not None:
            setattr(_local, name, None)
            try:
                ctx.free()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass


def gl_context(width: int, height: int, backend: str = "auto"):
    """This thread's offscreen OpenGL context of the back end, made current (created on first
    use: starting one costs 0.1–0.25 s on llvmpipe, so renderers of successive worlds share it;
    MuJoCo draws into its own framebuffer object, so the size only bounds the first use)."""
    name = _backend(backend)
    ctx = getattr(_local, name, None)
    if ctx is not None:
        ctx.make_current()
        return ctx
    plat = os.environ.get("PYOPENGL_PLATFORM")
    if plat and plat.lower() != name:
        raise RenderError(f"PYOPENGL_PLATFORM={plat} is set but the {name} back end was asked for; "
                          f"unset PYOPENGL_PLATFORM or set MUJOCO_GL={plat.lower()}")
    try:
        with _lock:
            if name == "egl":
                from mujoco.egl import GLContext
            else:
                from mujoco.osmesa import GLContext
            ctx = GLContext(width, height)
        ctx.make_current()
        setattr(_local, name, ctx)
        return ctx
    except Exception as err:  # noqa: BLE001 - every failure here means "no back end", reported as such
        if name == "osmesa":
            raise RenderError(f"MUJOCO_GL=osmesa could not start ({type(err).__name__}: {err}); {_OSMESA_FIX}") from err
        raise RenderError(f"EGL could not start an offscreen OpenGL context ({type(err).__name__}: {err}); "
                          f"{_EGL_FIX}") from err
