"""Network definitions; module attribute names reproduce the official state-dict keys."""
