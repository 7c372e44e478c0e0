"""The world node: the simulated MuJoCo world in its own process, following the joint states the
controller reports, hosting synthetic cameras like a camera node, publishing its ground truth
(``config``: the ``[world]`` table; ``scene``: building the configured world; ``node``: the node)."""
