"""Running an experiment: one runner (runner.py), its context and results (context.py), the
journal and the bus its handlers listen on (journal.py). The console handler is chaoslab/progress.py,
the one wait helper chaoslab/wait.py."""
