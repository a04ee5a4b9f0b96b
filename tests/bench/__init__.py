"""Benchmarks (`make bench`): never assertions, always ratios against a
baseline measured in the same run, because these machines are shared and noisy."""
