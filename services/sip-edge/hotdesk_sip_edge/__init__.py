"""hotdesk_sip_edge."""
