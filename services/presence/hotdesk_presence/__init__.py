"""hotdesk_presence: who sits where, for admins and for other systems.

* :mod:`.projections` — pure folds: desks, users, history (ledger projections run by
  ``hotdesk_ledger.projection.ProjectionRunner``), desk status and BLF states (bus folds
  run by :class:`~.projections.BusProjectionRunner`).
* :mod:`.views` — desks and users joined with the directory, as the API shows them.
* :mod:`.api` — the admin API (``/api/v1``) and the console (``/``), :func:`~.api.create_app`.
* :mod:`.auth` — console sessions with CSRF tokens, API tokens, the generated first admin.
* :mod:`.feed` — live desk changes for the Server-Sent Events stream.
* :mod:`.autologout` — idle, maximum-duration and daily logout policies.
* :mod:`.webhooks` — signed JSON POSTs of ledger events, with retries and a delivery log.
* :mod:`.main` — ``serve(ctx)``: everything above, wired.
"""
