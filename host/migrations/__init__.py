"""Alembic migrations of the bank schema (env.py, and one file per revision in versions/)."""
