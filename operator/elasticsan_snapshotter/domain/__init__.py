"""The pure core: identities, names, volume mapping, decisions and the error vocabulary.

Nothing here imports Kopf, gRPC, the Azure SDK or a Kubernetes client.
"""
