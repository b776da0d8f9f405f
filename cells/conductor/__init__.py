"""The cell conductor: the DB proxy for nodes and the owner of multi-step flows."""
