"""Media: decoding videos and preparing their frames exactly as EchoCLIP's published code does."""
