"""Schema revisions of the bank database, oldest first."""
