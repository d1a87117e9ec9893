"""Delivery status notifications (Postfix's bounce(8)): :mod:`.dsn` builds
the RFC 3464 report, :mod:`.notify` decides who gets one and queues it."""
