"""Benchmarks: figures, ratios to the theoretical limit and to a naive baseline (see bench/all.py)."""
