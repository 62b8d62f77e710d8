"""Settings and the YAML data that describe ATMs, devices, bank seed data and scenarios."""
