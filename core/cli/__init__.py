"""dkronctl: the command-line interface."""
