"""Weir's benchmark runner: Weir vs Apache Kafka vs the machine's physical limits."""
