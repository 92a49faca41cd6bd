"""Which input features an activation keeps: measured over the members of its preimage."""
