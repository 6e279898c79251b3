"""Figures and reports from results tables; reads tables, never runs environments."""
