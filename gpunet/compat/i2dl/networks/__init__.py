"""I2DL's ``exercise_code/networks``: layers, losses, optimizers and networks."""
