"""What is done with offers: storage, changes, alerts, metrics, the daemon, the weekly report."""

__version__ = "0.1.0"
