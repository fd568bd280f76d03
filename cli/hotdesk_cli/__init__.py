"""hotdesk_cli."""
