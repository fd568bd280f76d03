"""hotdesk_provisioner: phone vendor plugins, config rendering, the provisioning HTTP
server and reprovision tracking.

- :mod:`.vendors`: one plugin per vendor (Yealink, Poly, Snom, Grandstream, Fanvil,
  Cisco MPP) — a detector, the file names with the vendor's MAC casing, Jinja2 templates
  (``base`` + per-model overrides) and the re-fetch NOTIFY ``Event`` value.
- :mod:`.render`: ``render(desk, directory, seated, sip) -> {file name: bytes}`` (pure),
  ``config_version(files)``, ``check_templates(directory)``.
- :mod:`.server`: the ASGI provisioning server (``ProvisioningServer(...).app``).
- :mod:`.reprovision`: the pure tracker (NOTIFY answered -> fetched -> re-registered).
- :mod:`.nonces`: digest nonce counts (a replayed ``nc`` is refused).
- :mod:`.state`: what replicas share in KV — the nonce key, nonce counts, reprovisions
  in flight, learned vendors — so any replica serves, confirms and survives restarts.
- :mod:`.main`: ``serve(ctx)``, wiring all of it to NATS and uvicorn.

Regenerate the golden files after a deliberate template change with
``python -m tests.provisioner.update_golden`` and review the diff.
"""
