"""Shared fixtures: the golden outputs of the original KMP code and small demonstration sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get("KINEBRIDGE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{name} not found in {SHARED_DATA}; clone the project next to its shared/ folder "
                    "or set KINEBRIDGE_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def golden():
    """robInfLib (Huang's KMP code) run under Octave on letter G: GMM, GMR and KMP outputs."""
    g = np.load(shared_file("golden_kmp_letterG.npz"))
    return {k: g[k] for k in g.files}


@pytest.fixture(scope="session")
def letter_g():
    """The 13 letter-G demonstrations of robInfLib's 2Dletters/G.mat, as (200, 2) position arrays [cm]."""
    import scipy.io as sio
    m = sio.loadmat(shared_file("G.mat"), simplify_cells=True)
    return [np.asarray(d["pos"], dtype=float).T for d in m["demos"]]


@pytest.fixture(scope="session")
def gshape():
    """LASA GShape after the evaluation protocol's resampling (7 demos × 200 points, mm)."""
    from kinebridge.bench import lasa_protocol
    return lasa_protocol.load_demos("GShape")
