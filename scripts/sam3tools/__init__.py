"""Build-time tools for the SAM 3 server: roi_align shim, tiny checkpoints, the bundle exporter, parity references."""
