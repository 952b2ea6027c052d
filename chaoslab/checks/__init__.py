"""Checks: steady-state conditions (one sample in, structured violations out) and final checks
(judged once at the end of a variant: pass / fail / unknown, with evidence). One file per family."""
