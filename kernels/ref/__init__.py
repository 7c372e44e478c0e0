"""Plain-NumPy reference implementations of the kernels, for tests and speed ratios."""
