"""`serve --metrics-port`: Prometheus metrics of the RPCs and of every component, on their own HTTP port.

rpc_metrics.py counts calls as they end; collector.py reads the components' own counts (event_counts.py, their
stats()) when Prometheus scrapes; exposition.py serves both with the client library's process metrics. No label
carries a patient or study identifier, a file name or a prompt text: labels are method names, status codes,
refusal reasons, plugin names, devices and index types.
"""
