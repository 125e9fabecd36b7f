"""How offers are got out of the world: one package per provider, plus shared plumbing.

Nothing here imports `tracker`: scrapers know nothing of storage, the daemon or alerts.
"""
