"""``python -m hotdesk_cli``: the same as the ``hotdesk`` command."""

from hotdesk_cli.main import main

main()
