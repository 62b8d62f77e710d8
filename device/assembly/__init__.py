"""Assembly of a whole simulated ATM (devices, host, bank) and the `atm-sim` command line.

The only product code allowed to import device, peripherals and host together.
"""
