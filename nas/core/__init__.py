"""The ground rules every room shares: α (``arch``), genotypes and the published zoo, atomic
file writes, DDP collectives, learning-rate schedules. Imports nothing else of ``nas``.
"""
