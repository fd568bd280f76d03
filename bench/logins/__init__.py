"""The logins benchmark: SIPp desks log in through the real edge and IVR at stepped
rates (RFC 2833 PIN digits), measuring logins/s, last digit → ledger event latency, the
edge's RTP send jitter, and CPU per login. ``python -m bench.logins``."""
