"""Neural-network modules, losses and initialisers."""
