"""Language models: chat formatting, log-probs, sampling (HF / vLLM), preference training, launching and
checkpoints."""

import logging

# transformers imports DeepSpeed whenever it is installed, and DeepSpeed warns "Setting accelerator to CPU" in every
# process of a machine without a GPU: the expected case on a CPU, not news (each run prints the device it chose in
# its precision line). The filter sits on DeepSpeed's logger before DeepSpeed creates it, and outlives that.
logging.getLogger("DeepSpeed").addFilter(lambda r: not r.getMessage().startswith("Setting accelerator to CPU"))
