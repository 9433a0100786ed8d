"""Questions: reading files (any format and encoding), recipe data sources, synthetic questions."""
