"""hotdesk_contracts."""
