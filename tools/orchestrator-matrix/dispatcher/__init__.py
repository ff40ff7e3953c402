"""MACP dispatcher package: see macp_dispatcher."""
