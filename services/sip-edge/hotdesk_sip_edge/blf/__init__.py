"""BLF (busy lamp field) at the edge: the dialog event package, RFC 4235 over RFC 6665.

A phone's BLF key subscribes to an extension with ``SUBSCRIBE Event: dialog``; the edge
answers and keeps telling it the extension's dialogs in ``NOTIFY`` requests with
``application/dialog-info+xml`` bodies, until the subscription expires or is ended.

How the parts fit:

- :mod:`.dialog_info` renders and parses the bodies. Every body holds at least one
  ``<dialog>`` (an idle extension shows a terminated dialog with a stable id, because
  Yealink lamps misbehave without one) and the call-id, tags and direction Polycom's
  directed pickup needs.
- :mod:`.subscriptions` is the pure notifier: ``Subscriptions.subscribe`` decides the
  answer to a SUBSCRIBE (200, 423 + Min-Expires, 404, 481, 489 …) and the NOTIFY that
  follows it; ``state_changed`` fans an extension's new dialogs out to every subscription
  watching it; ``expire``, ``set_extensions`` and ``terminate_all`` end subscriptions
  with ``timeout``, ``noresource`` and ``deactivated``. Each subscription counts its own
  body ``version`` (from 0) and NOTIFY CSeq.
- :mod:`.notify` converts between those and SIP messages: ``subscribe_request`` reads a
  parsed SUBSCRIBE, ``subscribe_response`` answers it, ``build_notify`` makes the
  in-dialog NOTIFY (route set, remote target, Event, Subscription-State).
- :mod:`.watch` is the only I/O: ``BlfWatch`` follows the BLF read model that presence
  writes to the ``hotdesk_blf`` KV bucket and hands the resulting NOTIFYs to a send
  callback; ``expire_subscriptions`` ends timed-out subscriptions on a timer.

Every edge replica watches the whole bucket and notifies the subscriptions it holds in
memory. When an edge restarts, its subscriptions are gone: the phones' next refresh gets
481 and they subscribe again (RFC 6665 section 4.1.2.2); on an orderly shutdown
``terminate_all`` tells them at once (``reason=deactivated``: subscribe again now).
"""
