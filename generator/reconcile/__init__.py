"""The reconciler: plan the locked render against live state, then converge it safely."""
