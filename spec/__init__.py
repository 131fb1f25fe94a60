"""The RMSProp specification: SPEC.md (normative text) and its float64 oracle, ``spec.rmsprop``."""
