"""Benchmarks: each figure is measured side by side with its baseline in the same process."""
