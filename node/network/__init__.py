"""Host networking: the agent (what to build, from the network controller) and the Linux driver (how)."""
