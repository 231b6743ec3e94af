"""xvlm_lit.losses"""
