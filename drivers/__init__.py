"""kinebridge.drivers: arm and camera drivers, real and simulated (later issues)."""
