"""kumulus-agent: runs on each provider host, turns API requests into hardened VM containers."""
