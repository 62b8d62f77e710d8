"""The simulator around the ATM: whole ATMs assembled with their devices and bank, the `atm-sim`
command, demo, scenarios, fleet, chaos, crash explorer, worker, the HTTP lab and the kiosk.

The only product code allowed to import device, peripherals and host together.
"""
