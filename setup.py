"""Package discovery for kinebridge: each top-level folder installs as ``kinebridge.<folder>``.

The folders stay at the top of the checkout (runtime/, kernels/, export/, drivers/, bench/) and map
into one import package; every sub-folder with an ``__init__.py`` is a sub-package. Everything else
is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup

ROOTS = ("runtime", "kernels", "export", "drivers", "bench")
HERE = Path(__file__).parent

packages = sorted("kinebridge." + ".".join(init.parent.relative_to(HERE).parts)
                  for root in ROOTS for init in (HERE / root).rglob("__init__.py")
                  if ".venv" not in init.parts and "__pycache__" not in init.parts)
setup(packages=packages, package_dir={f"kinebridge.{r}": r for r in ROOTS})
