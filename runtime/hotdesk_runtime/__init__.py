"""hotdesk_runtime."""
