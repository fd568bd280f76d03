"""REGISTER benchmark: ``python -m bench.register``.

SIPp registers 1,000 users with digest authentication at rising rates against each
registrar in the same run on the same machine: Kamailio (one worker, and its default
worker count for reference) and the hotdesk SIP edge. Per registrar: the highest rate
with < 0.1% failures that it keeps up with, p99 registration delay, CPU per REGISTER;
and the ratio edge / Kamailio. Figures go to ``bench/results/register.json`` and the
chart to ``bench/results/register.png``.
"""
