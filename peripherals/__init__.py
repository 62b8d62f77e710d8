"""The emulated hardware: wire protocol specs, one emulator per device, faults and serial links.

Imports nothing from device or host: it is the hardware.
"""
