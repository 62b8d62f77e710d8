"""The HTTP service on :8000: the app that joins the bank's routes and the ATM lab's, the lab of
simulated ATMs hosted by the service, long operations as jobs, and `atm-sim api`.
"""
