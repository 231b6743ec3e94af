"""xvlm-lit: X-VLM multi-grained vision-language pre-training on Lightning + Hydra."""

__version__ = "0.1.0"
