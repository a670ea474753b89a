"""Kumulus: a decentralized cloud of SSH-accessible VMs on providers' machines."""

__version__ = "0.1.0"
