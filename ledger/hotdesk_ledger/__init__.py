"""hotdesk_ledger."""
