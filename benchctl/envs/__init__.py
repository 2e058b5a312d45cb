"""Suite adapters behind one small Env interface (see `base.py`)."""
