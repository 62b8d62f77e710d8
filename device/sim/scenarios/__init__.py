"""Scripted fault-injection scenarios: YAML files checked on load, run against a fresh bank,
a host behind a fault proxy and a simulated ATM on the virtual clock.
"""
