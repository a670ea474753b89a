"""Thin layer over substrate-interface: transfers, remarks, balances, finalized blocks.
Knows nothing of the backend; the same code runs against chopsticks and a real network."""
