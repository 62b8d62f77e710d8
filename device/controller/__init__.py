"""The ATM application: a declarative state machine over the device drivers and the host link."""
