"""The virtual serial harness: a bay of emulated devices on links, faults, and pytest fixtures."""
