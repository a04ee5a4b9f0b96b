"""BudgetService: who may spend how much.

domain/ (values and rules) < store/ (tables and SQL) < app/ (use cases) <
servicer.py and convert.py (the gRPC edge) < main.py (the composition root).
"""
