"""cleanup: turns an accepted message into one complete queue file (Postfix's cleanup(8))."""
