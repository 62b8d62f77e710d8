"""The ATM itself: controller and settlement, device drivers, host client, journal, screens.

Talks to peripherals only through bytes on serial ports and to the host only through ISO 8583;
`device.sim` is the simulator built around it, and nothing here imports it.
"""
