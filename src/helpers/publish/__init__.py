"""publish room."""
