"""Provisioning benchmark: the provisioning server against nginx, and the time from a
ledger event to the check-sync command."""
