"""Parity verification: every bundle artifact against the PyTorch student on the task's real eval split.

`verify.verify_bundle` runs it; `parity` holds the thresholds, `runners` the model interface, `report` parity.md.
"""
