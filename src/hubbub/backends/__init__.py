"""Storage and messaging backends behind small contracts (see base.py)."""
