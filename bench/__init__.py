"""kinebridge.bench: evaluation and latency benchmark commands (`kinebridge eval ...`, `kinebridge bench ...`)."""
