"""Media for the calls the edge answers itself: SDP offer/answer, RTP, G.711, DTMF
(RFC 4733 events and SIP INFO), the per-call media session and its bridge to the IVR."""
