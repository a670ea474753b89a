"""Kumulus backend: accounts, providers and their hosts, developers and their VMs."""
