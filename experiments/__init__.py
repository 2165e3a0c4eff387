"""Experiments: benchmarks, launch scripts and one-file paper reproductions."""
