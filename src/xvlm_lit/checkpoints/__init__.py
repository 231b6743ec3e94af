"""xvlm_lit.checkpoints"""
