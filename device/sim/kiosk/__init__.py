"""The kiosk: a pygame window that draws the ATM fascia and drives the simulated ATM through it.

Run it with `atm-sim kiosk`; docs/kiosk.md has the keys and the operator panel.
"""
