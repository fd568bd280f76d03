"""hotdesk_provisioner."""
