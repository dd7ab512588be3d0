"""Azure adapters of the port: the real one over the Azure SDKs and an in-memory fake for tests."""
