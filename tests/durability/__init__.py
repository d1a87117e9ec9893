"""Durability of the running server: kill -9 under load, and failing disks."""
