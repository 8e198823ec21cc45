"""The S3-compatible gateway over a Datastore (doc/s3.md).

Public API: ``server.serve_s3(ds, settings)`` and ``settings.S3Settings``,
``settings.S3Credential``, ``settings.new_credential``. Nothing is imported here, so
that reading the settings (dscfg, a node without a gateway) does not load the HTTP
stack.
"""
