"""kinebridge.kernels: numerical cores (Numba-compiled)."""
