"""Everything between a resolved recipe and a finished run: trainer, checkpoints, logging, devices."""
