"""MACP event transports (Matrix)."""
