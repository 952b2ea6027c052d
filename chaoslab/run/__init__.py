"""Running an experiment: one runner (runner.py), its context and results (context.py), the
journal and its handlers (journal.py, handlers.py). The one wait helper is chaoslab/wait.py."""
