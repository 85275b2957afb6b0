"""What an architecture costs: parameters and multiply-adds (``profile``), per-candidate cost
tables and the supernet's expected cost (``costs``), latency tables (``latency``), hard targets
(``constraint``).
"""
