"""The Kubernetes adapter: Kopf handlers (thin), reconcilers, status and Events."""
