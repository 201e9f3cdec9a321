"""echosearch server: video pipeline, EchoCLIP model, catalog, index, tasks, engine, gRPC API."""
