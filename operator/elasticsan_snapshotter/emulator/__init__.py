"""A local emulator of the Azure Resource Manager endpoints this project uses.

It serves Microsoft.ElasticSan (api-version 2025-09-01), Microsoft.Compute snapshots
exported from Elastic SAN snapshots, and the Entra ID token endpoints that azure-identity
calls, over HTTPS with a generated CA. It imports nothing from the rest of the package so
that users can run it on its own. See ``docs/emulator.md``.
"""
