"""The whole-kit orchestrator: per task distil -> TFLite -> Core ML -> verify -> latency, cached, then a report."""
