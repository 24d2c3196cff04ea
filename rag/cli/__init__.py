"""The terminal skin: commands (app) and every text, JSON and HTML rendering (render, reports, progress)."""
