"""The way in for producers that are not configured nodes: `kinebridge task`, a user's script, a VLA
server on a GPU box (``node``: the ingress node; ``client``: what a producer uses)."""
