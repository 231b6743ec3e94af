"""xvlm_lit.utils"""
