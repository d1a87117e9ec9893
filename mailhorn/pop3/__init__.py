"""POP3 (RFC 1939, 2449, 2595, 5034): the ``pop3d`` master.cf command.

* :mod:`.codec` — sans-I/O lines in, replies and dot-stuffed messages out;
* :mod:`.session` — the AUTHORIZATION/TRANSACTION/UPDATE state machine;
* :mod:`.server` — ``serve(listener, config, runtime, service)``, the
  asyncio service the master runs for master.cf entries whose command is
  ``pop3d``.
"""
