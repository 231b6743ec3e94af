"""xvlm_lit.models"""
