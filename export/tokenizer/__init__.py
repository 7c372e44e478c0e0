"""KineVLA's action tokens: the bi-level RVQ-VAE (§3.1), its baselines at the same token budget (single-level
RVQ, OpenVLA-style 256 bins, FAST), their training, export to ONNX + a compiled decoder with a manifest, and
the evaluation. :mod:`.data` (numpy only) reads the Kine data set; everything else needs the ``training`` extra.
"""
