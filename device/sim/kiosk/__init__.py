"""The kiosk: a pygame window that draws the ATM fascia and drives the simulated ATM through it.

Run it with `atm-sim kiosk`; docs/kiosk.md has the keys and the operator panel.
"""

import os

# pygame prints a greeting to stdout when first imported; the kiosk's output is its own.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
