"""Probes: sampled every period in their own threads, never fatal; each second's sample holds
every probe's latest figures under the probe's key. One file per family."""
