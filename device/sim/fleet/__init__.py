"""A fleet of simulated ATMs against one bank: N ATMs on their own ptys and terminal ids, random
customers from a seed; a summary of throughput, latency, outcomes and the money invariants.
"""
