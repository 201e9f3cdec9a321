"""echosearch server: serve.py -> rpc/ (gRPC) -> services/ (use cases) -> storage/, tasks/, media/, encoder, model."""
