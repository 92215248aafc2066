"""Building blocks with structural reparameterisation."""
