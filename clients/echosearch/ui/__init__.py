"""The echosearch web UI: a gRPC client of the service rendering HTML on the server (extra `ui`)."""
