"""Operator tools: cluster.yaml resolution, the service supervisor, cellctl."""
