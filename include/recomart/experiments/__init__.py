"""Online experiments: definitions, sticky assignment, attribution of outcomes, statistics,
readout and gated promotion."""
