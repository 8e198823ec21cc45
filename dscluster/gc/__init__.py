"""Garbage collection of the IPFS blocks dscluster wrote (doc/operations.md, "Garbage
collection").

- ``claims``: what every writer of UnixFS DAGs (dsclient add, the S3 gateway) goes
  through: an ownership marker before each block, and a lease while it adds.
- ``pins``: Kubo-like recursive pins, replicated records like any key.
- ``walk``: the blocks a set of roots reaches, through dag-pb links.
- ``collect``: mark (pins, S3 objects, uploads in progress) and sweep.

The modules are imported by name (``from dscluster.gc.claims import …``): the S3 gateway
uses ``claims`` while ``collect`` reads the gateway's records, so this package imports
none of them itself.
"""
