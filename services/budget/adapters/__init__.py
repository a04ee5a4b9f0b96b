"""BudgetService's clients of other systems: the webhook sender."""
