"""μTransfer sweeps: search spaces, the results store, fits of the optimum, transfer."""
