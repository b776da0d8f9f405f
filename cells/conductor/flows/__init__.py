"""Multi-step conductor flows, one module each (validate -> lock -> check -> act)."""
