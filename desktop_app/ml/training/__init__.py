"""The run machinery every training method shares: the loop (``loop.train``), the optimiser
and number formats (``optim``), and crash-safe checkpoint files (``files``)."""
