"""Contract suites: one device conversation through its driver over every link backend."""
