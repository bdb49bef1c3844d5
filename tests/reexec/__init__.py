"""Live re-exec: load across re-execs, snapshot fixtures, preflight, root pivots."""
