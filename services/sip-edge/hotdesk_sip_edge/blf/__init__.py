"""BLF (busy lamp field) at the edge: the RFC 4235 dialog event package."""
