"""xvlm_lit.tasks"""
