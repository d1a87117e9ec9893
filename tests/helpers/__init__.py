"""Helpers shared by the test packages (ports, server harnesses, processes)."""
