"""xvlm_lit.evaluation"""
