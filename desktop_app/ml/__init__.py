"""torch + transformers + peft jobs. No Qt here: the GUI and the CLI call these the same way."""
