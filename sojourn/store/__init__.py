"""Facade-owned records (keys, principals, ...): see models.py."""
