"""hotdesk_ivr."""
