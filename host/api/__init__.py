"""The bank's side of the HTTP service: operator sign-in and roles, bank administration routes,
their request and response models, and the host's metrics.
"""
