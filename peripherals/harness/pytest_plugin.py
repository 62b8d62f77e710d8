"""pytest plugin (entry point `pytest11`): fixtures for testing ATM software on emulated devices."""
