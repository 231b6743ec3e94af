"""xvlm-lit: X-VLM multi-grained vision-language pre-training on Lightning + Hydra."""

__version__ = "0.1.0"

from xvlm_lit.hardware import register_resolvers

register_resolvers()  # ${xvlm_precision:...} in conf/trainer resolves wherever a config is composed or re-read
