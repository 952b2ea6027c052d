"""Monitors: run handlers declared in the experiment file, reacting to samples and events
(take evidence, count what a platform's monitoring would have ordered). One file per family."""
