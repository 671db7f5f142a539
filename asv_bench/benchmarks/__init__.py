"""asv benchmarks of softcore: one module per op family (see docs/benchmarks.md)."""
