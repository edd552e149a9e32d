"""Export stage: the student as TFLite and Core ML artifacts in a task bundle, with parity proven on real data."""
