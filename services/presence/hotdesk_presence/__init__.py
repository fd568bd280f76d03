"""hotdesk_presence."""
