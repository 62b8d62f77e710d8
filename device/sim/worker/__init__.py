"""Celery workers of the simulator: statement PDFs, scenario batches and fleet shards as tasks,
on Redis when REDIS_URL is set, else on the bank's own PostgreSQL server.
"""
