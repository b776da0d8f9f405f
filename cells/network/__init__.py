"""The cell network controller (topic `network`): networks, subnets, ports, IPAM, security groups."""
