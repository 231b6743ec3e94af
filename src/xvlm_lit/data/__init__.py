"""xvlm_lit.data"""
