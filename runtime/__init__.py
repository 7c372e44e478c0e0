"""kinebridge.runtime: processes and their wiring, and the `kinebridge` command line."""
