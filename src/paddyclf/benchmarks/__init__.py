"""Benchmarks that measure the project's claims as ratios against a baseline in the same run."""
