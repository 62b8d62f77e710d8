"""Thin entry points: seeding the bank, smoke tests and benchmarks."""
