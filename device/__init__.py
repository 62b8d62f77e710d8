"""The ATM itself: controller, device drivers, host client, journal, kiosk and assembly.

Talks to peripherals only through bytes on serial ports and to the host only through ISO 8583.
"""
