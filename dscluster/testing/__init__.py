"""Test harnesses that are part of the package, as ``trio.testing`` is: an in-memory
cluster (memcluster.py) for fast, deterministic replication and repair tests."""
