"""Shared machinery of every task: data helpers, the trainer, the benchmark harness."""
