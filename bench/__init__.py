"""The benchmark harness: `bench/run` (see docs/benchmarks.md)."""
