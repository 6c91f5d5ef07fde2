"""Generated from proto/ by `python proto/generate.py`; do not edit."""
