"""/network: the Neutron v2.0 subset."""
