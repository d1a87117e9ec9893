"""DNS lookups for the MTA: an asynchronous resolver with Postfix's error classes."""
