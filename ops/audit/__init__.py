"""The audit of repaired signals as an operator reads it: a terminal table and a self-contained HTML report."""
