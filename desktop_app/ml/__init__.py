"""torch + transformers + peft jobs. No Qt here: the GUI and the CLI call these the same way."""

import logging

# bitsandbytes (0.50), imported by transformers and peft, looks for the optional `kernels`
# package on a CPU with AVX512-BF16 and warns on stderr ("pip install kernels") when it is
# absent. That package would download its kernel from the Hugging Face hub, which RLHF Desk
# never does, and the 4-bit path works without it: the warning is noise on every command.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
