"""The gRPC layer: the servicer (one short method per RPC), the status table, the chunked-upload protocol,
and every proto <-> record mapping. It calls services/ only; serve.py is the one module that imports it."""
