"""SIP protocol core: messages, URIs, headers, digest auth, transports, transactions.

One module per concern, written as ``parse``/``serialize`` pairs with typed errors and
the RFC sections they follow cited where the behaviour is not obvious.
"""
