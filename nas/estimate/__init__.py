"""Performance estimation beside weight sharing: benchmark lookups (NAS-Bench-201).
"""
