"""Delivery agents: local, virtual, smtp/lmtp, pipe, error, discard (Postfix's delivery daemons)."""
