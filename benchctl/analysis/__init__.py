"""Diagnostics beyond returns: planner-gradient quality and planning cost."""
