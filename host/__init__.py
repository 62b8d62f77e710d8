"""The bank: ISO 8583 server, authorisation service, PIN verification unit, models, migrations.

Imports nothing from device or peripherals.
"""
