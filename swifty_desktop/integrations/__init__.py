"""Talking to systems outside the app: supplier shops, the ECB, mail servers.

Plain Python (requests, smtplib, the standard library), no Qt: these modules run
inside job worker processes.  Each module is imported by the job body that needs
it, never at import time of :mod:`swifty_desktop.tasks`, so listing kinds stays cheap.

- :mod:`.http` — one ``requests.Session`` with timeouts and request-level retries.
- :mod:`.woocommerce` — the WooCommerce REST API v3 products endpoint.
- :mod:`.demo_supplier` — a built-in loopback shop serving generated products in
  that format, so *Sync catalog* works before a real supplier is set up.
- :mod:`.ecb` — the European Central Bank's daily reference rates (eurofxref XML).
- :mod:`.mailer` — templates, MIME messages, SMTP and the ``outbox/`` folder.
- :mod:`.mail_ledger` — the per-recipient ledger that makes a batch exactly-once.
"""
